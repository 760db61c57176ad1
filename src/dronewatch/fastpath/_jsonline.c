/* A record as one JSONL line, the line dronewatch.output.jsonl.json_line makes of its to_dict().

   json_record(record, names) reads the attributes named (in the order given: the caller sorts
   them), leaves out those that are None, and writes the rest as json.dumps(sort_keys=True,
   separators=(",", ":"), ensure_ascii=False) would, with json_line's escapes of the characters
   that could end a line or drive a terminal (DEL, the C1 controls, U+2028, U+2029). Values may
   be str, int, bool, float, None, and lists, tuples and str-keyed dicts of them; for anything
   else (or nesting deeper than MAX_DEPTH) it returns None and the caller makes the line the
   slow way, so the two agree on every record by construction of the fallback. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_DEPTH 32

typedef struct {
    Py_UCS4 *buf;
    Py_ssize_t len, cap;
} Out;

static int out_grow(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap) return 0;
    Py_ssize_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + more) cap *= 2;
    Py_UCS4 *buf = PyMem_Realloc(o->buf, (size_t)cap * sizeof(Py_UCS4));
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int out_ascii(Out *o, const char *text, Py_ssize_t n) {
    if (out_grow(o, n) < 0) return -1;
    for (Py_ssize_t i = 0; i < n; i++) o->buf[o->len++] = (unsigned char)text[i];
    return 0;
}

static int out_text(Out *o, PyObject *text) { /* a str of the float or int repr: ASCII */
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (out_grow(o, n) < 0) return -1;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < n; i++) o->buf[o->len++] = PyUnicode_READ(kind, data, i);
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static int out_string(Out *o, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if (out_grow(o, 6 * n + 2) < 0) return -1; /* the worst case: every character escaped */
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    Py_UCS4 *w = o->buf + o->len;
    *w++ = '"';
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = c;
        } else if (c >= 0x20 && c != 0x7f && !(c >= 0x80 && c < 0xa0) && c != 0x2028 &&
                   c != 0x2029) {
            *w++ = c;
        } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
            *w++ = '\\';
            *w++ = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
        } else {
            *w++ = '\\';
            *w++ = 'u';
            *w++ = HEX[(c >> 12) & 15];
            *w++ = HEX[(c >> 8) & 15];
            *w++ = HEX[(c >> 4) & 15];
            *w++ = HEX[c & 15];
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 0;
}

/* 1: written; 0: a value this encoder leaves to json (the caller falls back); -1: error. */
static int out_value(Out *o, PyObject *v, int depth);

static int out_sequence(Out *o, PyObject *seq, int depth) {
    PyObject *fast = PySequence_Fast(seq, "a list or tuple");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    int rc = out_ascii(o, "[", 1) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        if (i && out_ascii(o, ",", 1) < 0) rc = -1;
        else rc = out_value(o, items[i], depth + 1);
    }
    Py_DECREF(fast);
    if (rc == 1 && out_ascii(o, "]", 1) < 0) rc = -1;
    return rc;
}

static int out_dict(Out *o, PyObject *dict, int depth) {
    PyObject *keys = PyDict_Keys(dict);
    if (keys == NULL) return -1;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(keys, i))) {
            Py_DECREF(keys);
            return 0; /* json turns other keys into text: left to it */
        }
    }
    int rc = PyList_Sort(keys) < 0 || out_ascii(o, "{", 1) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *value = PyDict_GetItemWithError(dict, key);
        if (value == NULL) rc = -1; /* the dict changed under us, or an error */
        else if ((i && out_ascii(o, ",", 1) < 0) || out_string(o, key) < 0 ||
                 out_ascii(o, ":", 1) < 0)
            rc = -1;
        else rc = out_value(o, value, depth + 1);
    }
    Py_DECREF(keys);
    if (rc == 1 && out_ascii(o, "}", 1) < 0) rc = -1;
    if (rc == -1 && !PyErr_Occurred()) rc = 0;
    return rc;
}

static int out_value(Out *o, PyObject *v, int depth) {
    if (depth > MAX_DEPTH) return 0;
    if (v == Py_None) return out_ascii(o, "null", 4) < 0 ? -1 : 1;
    if (v == Py_True) return out_ascii(o, "true", 4) < 0 ? -1 : 1;
    if (v == Py_False) return out_ascii(o, "false", 5) < 0 ? -1 : 1;
    if (PyUnicode_Check(v)) return out_string(o, v) < 0 ? -1 : 1;
    if (PyLong_Check(v)) { /* json writes int.__repr__, an int subclass's too */
        PyObject *text = PyLong_Type.tp_repr(v);
        int rc = text == NULL || out_text(o, text) < 0 ? -1 : 1;
        Py_XDECREF(text);
        return rc;
    }
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (Py_IS_NAN(d)) return out_ascii(o, "NaN", 3) < 0 ? -1 : 1;
        if (Py_IS_INFINITY(d))
            return (d > 0 ? out_ascii(o, "Infinity", 8) : out_ascii(o, "-Infinity", 9)) < 0 ? -1 : 1;
        PyObject *text = PyFloat_Type.tp_repr(v);
        int rc = text == NULL || out_text(o, text) < 0 ? -1 : 1;
        Py_XDECREF(text);
        return rc;
    }
    if (PyList_Check(v) || PyTuple_Check(v)) return out_sequence(o, v, depth);
    if (PyDict_Check(v)) return out_dict(o, v, depth);
    return 0;
}

static PyObject *json_record(PyObject *self, PyObject *args) {
    PyObject *record, *names;
    if (!PyArg_ParseTuple(args, "OO!:json_record", &record, &PyTuple_Type, &names)) return NULL;
    Out o = {NULL, 0, 0};
    int rc = out_ascii(&o, "{", 1) < 0 ? -1 : 1;
    int first = 1;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "json_record: names must be str");
            rc = -1;
            break;
        }
        PyObject *value = PyObject_GetAttr(record, name);
        if (value == NULL) {
            rc = -1;
            break;
        }
        if (value != Py_None) {
            if ((!first && out_ascii(&o, ",", 1) < 0) || out_string(&o, name) < 0 ||
                out_ascii(&o, ":", 1) < 0)
                rc = -1;
            else rc = out_value(&o, value, 1);
            first = 0;
        }
        Py_DECREF(value);
    }
    PyObject *line = NULL;
    if (rc == 1 && out_ascii(&o, "}", 1) == 0)
        line = PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, o.buf, o.len);
    PyMem_Free(o.buf);
    if (rc == 0) Py_RETURN_NONE;
    return line;
}

static PyMethodDef jsonline_methods[] = {
    {"json_record", json_record, METH_VARARGS,
     "json_record(record, names) -> str or None\n\n"
     "The record's attributes named (given sorted), those that are None left out, as one "
     "compact JSON line with json_line's escapes; None for a value it leaves to json."},
    {NULL, NULL, 0, NULL},
};

int dw_add_jsonline(PyObject *module) {
    return PyModule_AddFunctions(module, jsonline_methods);
}
