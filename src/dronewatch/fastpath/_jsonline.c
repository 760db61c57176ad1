/* A record as one JSONL line, the line dronewatch.output.jsonl.json_line makes of its to_dict().

   json_record(record, names[, members]) reads the attributes named (in the order given: the
   caller sorts them), leaves out those that are None, and writes the rest as
   json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False) would, with json_line's
   escapes of the characters that could end a line or drive a terminal (DEL, the C1 controls,
   U+2028, U+2029). Values may be str, int, bool, float, None, and lists, tuples and str-keyed
   dicts of them; for anything else (or nesting deeper than MAX_DEPTH) it returns None and the
   caller makes the line the slow way, so the two agree on every record by construction of the
   fallback. `members`, where given, are the member descriptors of the names (a slots record's
   fields), read straight from the record's slots instead of by attribute lookup.

   The line is put together as UTF-8 in a buffer that starts on the stack (a flow's line is a
   few hundred bytes), ints and floats written without making their repr objects, and handed
   back as bytes with its newline, ready for the file (no str made, none encoded again). A lone
   surrogate, which UTF-8 cannot hold, is escaped as json_line escapes it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <math.h>
#include <string.h>

#define MAX_DEPTH 32
#define STACK_BYTES 2048

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    char stack[STACK_BYTES];
} Out;

static int out_grow(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap) return 0;
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->len + more) cap *= 2;
    char *buf;
    if (o->buf == o->stack) {
        buf = PyMem_Malloc((size_t)cap);
        if (buf != NULL) memcpy(buf, o->stack, (size_t)o->len);
    } else {
        buf = PyMem_Realloc(o->buf, (size_t)cap);
    }
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    o->buf = buf;
    o->cap = cap;
    return 0;
}

static int out_bytes(Out *o, const char *text, Py_ssize_t n) {
    if (out_grow(o, n) < 0) return -1;
    memcpy(o->buf + o->len, text, (size_t)n);
    o->len += n;
    return 0;
}

static const char HEX[] = "0123456789abcdef";

static char *escape_u(char *w, Py_UCS4 c) {
    *w++ = '\\';
    *w++ = 'u';
    *w++ = HEX[(c >> 12) & 15];
    *w++ = HEX[(c >> 8) & 15];
    *w++ = HEX[(c >> 4) & 15];
    *w++ = HEX[c & 15];
    return w;
}

/* An ASCII character: as it is, or escaped as json escapes it (json_line adds DEL). */
static char *put_ascii(char *w, unsigned char c) {
    if (c == '"' || c == '\\') {
        *w++ = '\\';
        *w++ = (char)c;
    } else if (c >= 0x20 && c != 0x7f) {
        *w++ = (char)c;
    } else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f') {
        *w++ = '\\';
        *w++ = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
    } else {
        w = escape_u(w, c);
    }
    return w;
}

static int out_string(Out *o, PyObject *s) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    /* The worst case: every character escaped (6 bytes; no character takes more in UTF-8). */
    if (out_grow(o, 6 * n + 2) < 0) return -1;
    char *w = o->buf + o->len;
    *w++ = '"';
    if (PyUnicode_IS_ASCII(s)) {
        const unsigned char *p = PyUnicode_1BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) w = put_ascii(w, p[i]);
    } else {
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x80) {
                w = put_ascii(w, (unsigned char)c);
            } else if (c < 0xa0 || c == 0x2028 || c == 0x2029) {
                w = escape_u(w, c); /* the C1 controls and the line separators */
            } else if (c < 0x800) {
                *w++ = (char)(0xc0 | (c >> 6));
                *w++ = (char)(0x80 | (c & 0x3f));
            } else if (c >= 0xd800 && c <= 0xdfff) {
                w = escape_u(w, c); /* a lone surrogate: no UTF-8 holds it, JSON's escape does */
            } else if (c < 0x10000) {
                *w++ = (char)(0xe0 | (c >> 12));
                *w++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *w++ = (char)(0x80 | (c & 0x3f));
            } else {
                *w++ = (char)(0xf0 | (c >> 18));
                *w++ = (char)(0x80 | ((c >> 12) & 0x3f));
                *w++ = (char)(0x80 | ((c >> 6) & 0x3f));
                *w++ = (char)(0x80 | (c & 0x3f));
            }
        }
    }
    *w++ = '"';
    o->len = w - o->buf;
    return 0;
}

static int out_repr(Out *o, PyObject *v, reprfunc repr) { /* an ASCII repr, made by Python */
    PyObject *text = repr(v);
    if (text == NULL) return -1;
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(text, &n);
    int rc = utf8 == NULL || out_bytes(o, utf8, n) < 0 ? -1 : 0;
    Py_DECREF(text);
    return rc;
}

static int out_long(Out *o, PyObject *v) { /* int.__repr__, which json writes for any int */
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow) return out_repr(o, v, PyLong_Type.tp_repr);
    if (x == -1 && PyErr_Occurred()) return -1;
    char digits[24];
    char *end = digits + sizeof digits, *p = end;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (x < 0) *--p = '-';
    return out_bytes(o, p, end - p);
}

/* float.__repr__ of `d` written into `text` the short way, where it is a decimal of at most six
   places between 1e-4 and 2**32 in size (capture times to the microsecond, durations, round
   trips, confidences: most floats of a record); its length, or 0 where that does not apply.

   repr writes the shortest digits that read back as `d` (the nearest to `d` among them), in
   fixed notation at these sizes. The candidate C = n / 10**6, n the nearest integer to
   |d| * 10**6, written with its trailing zeros dropped (j decimals, ".0" for none), reads back
   as `d` when `d` is the double nearest to C: when |C - |d|| is below half the gap from |d| to
   its next double on either side (checked, with a margin, on the exact residual fma gives).
   No shorter string reads back as `d`: it would be a multiple of 10**-(j-1), at least 10**-j
   away from C, and two strings that read back as `d` lie within one gap of each other, which is
   checked to be below half of 10**-j. So C's text is repr's. */
static int short_float(char *text, double d) {
    double a = fabs(d);
    if (!(a >= 1e-4 && a < 4294967296.0)) return 0;
    double n = nearbyint(a * 1e6);
    double up = nextafter(a, INFINITY) - a, down = a - nextafter(a, 0.0);
    double gap = up < down ? up : down;
    if (fabs(fma(a, 1e6, -n)) >= 0.4999 * gap * 1e6) return 0; /* not the nearest to C */
    unsigned long long u = (unsigned long long)n, whole = u / 1000000ULL;
    unsigned fraction = (unsigned)(u % 1000000ULL);
    int places = 6;
    while (places && fraction % 10 == 0) fraction /= 10, places--;
    static const double TENTHS[7] = {1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6};
    if (up >= 0.5 * TENTHS[places]) return 0; /* a shorter string might read back as d */
    char digits[24], *end = digits + sizeof digits, *p = end;
    for (int k = 0; k < (places ? places : 1); k++, fraction /= 10)
        *--p = (char)('0' + fraction % 10);
    *--p = '.';
    do {
        *--p = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    if (d < 0) *--p = '-';
    memcpy(text, p, (size_t)(end - p));
    return (int)(end - p);
}

static int out_float(Out *o, double d) { /* float.__repr__, as json writes a finite float */
    char quick[24];
    int n = short_float(quick, d);
    if (n) return out_bytes(o, quick, n);
    char *text = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) return -1;
    int rc = out_bytes(o, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return rc;
}

/* 1: written; 0: a value this encoder leaves to json (the caller falls back); -1: error. */
static int out_value(Out *o, PyObject *v, int depth);

static int out_sequence(Out *o, PyObject *seq, int depth) {
    PyObject *fast = PySequence_Fast(seq, "a list or tuple");
    if (fast == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    int rc = out_bytes(o, "[", 1) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        if (i && out_bytes(o, ",", 1) < 0) rc = -1;
        else rc = out_value(o, items[i], depth + 1);
    }
    Py_DECREF(fast);
    if (rc == 1 && out_bytes(o, "]", 1) < 0) rc = -1;
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
    int rc = PyList_Sort(keys) < 0 || out_bytes(o, "{", 1) < 0 ? -1 : 1;
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *value = PyDict_GetItemWithError(dict, key);
        if (value == NULL) rc = -1; /* the dict changed under us, or an error */
        else if ((i && out_bytes(o, ",", 1) < 0) || out_string(o, key) < 0 ||
                 out_bytes(o, ":", 1) < 0)
            rc = -1;
        else rc = out_value(o, value, depth + 1);
    }
    Py_DECREF(keys);
    if (rc == 1 && out_bytes(o, "}", 1) < 0) rc = -1;
    if (rc == -1 && !PyErr_Occurred()) rc = 0;
    return rc;
}

static int out_value(Out *o, PyObject *v, int depth) {
    if (depth > MAX_DEPTH) return 0;
    if (v == Py_None) return out_bytes(o, "null", 4) < 0 ? -1 : 1;
    if (v == Py_True) return out_bytes(o, "true", 4) < 0 ? -1 : 1;
    if (v == Py_False) return out_bytes(o, "false", 5) < 0 ? -1 : 1;
    if (PyUnicode_Check(v)) return out_string(o, v) < 0 ? -1 : 1;
    if (PyLong_Check(v)) return out_long(o, v) < 0 ? -1 : 1;
    if (PyFloat_Check(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        if (Py_IS_NAN(d)) return out_bytes(o, "NaN", 3) < 0 ? -1 : 1;
        if (Py_IS_INFINITY(d))
            return (d > 0 ? out_bytes(o, "Infinity", 8) : out_bytes(o, "-Infinity", 9)) < 0 ? -1 : 1;
        return out_float(o, d) < 0 ? -1 : 1;
    }
    if (PyList_Check(v) || PyTuple_Check(v)) return out_sequence(o, v, depth);
    if (PyDict_Check(v)) return out_dict(o, v, depth);
    return 0;
}

/* The slot member descriptor `d` of `record`'s type or an ancestor, or NULL (look it up). */
static PyMemberDef *slot_of(PyObject *record, PyObject *d) {
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type)) return NULL;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    if (m->type != T_OBJECT_EX || !PyObject_TypeCheck(record, ((PyDescrObject *)d)->d_type))
        return NULL;
    return m;
}

static PyObject *json_record(PyObject *self, PyObject *args) {
    PyObject *record, *names, *members = NULL;
    if (!PyArg_ParseTuple(args, "OO!|O!:json_record", &record, &PyTuple_Type, &names,
                          &PyTuple_Type, &members))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (members != NULL && PyTuple_GET_SIZE(members) != n) {
        PyErr_SetString(PyExc_TypeError, "json_record: one member per name");
        return NULL;
    }
    Out o;
    o.buf = o.stack;
    o.len = 0;
    o.cap = STACK_BYTES;
    int rc = out_bytes(&o, "{", 1) < 0 ? -1 : 1;
    int first = 1;
    for (Py_ssize_t i = 0; rc == 1 && i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if (!PyUnicode_Check(name)) {
            PyErr_SetString(PyExc_TypeError, "json_record: names must be str");
            rc = -1;
            break;
        }
        PyMemberDef *m = members != NULL ? slot_of(record, PyTuple_GET_ITEM(members, i)) : NULL;
        PyObject *value;
        if (m != NULL) {
            value = *(PyObject **)((char *)record + m->offset);
            if (value == NULL) {
                PyErr_Format(PyExc_AttributeError, "record has no value for %U", name);
                rc = -1;
                break;
            }
            Py_INCREF(value);
        } else {
            value = PyObject_GetAttr(record, name);
            if (value == NULL) {
                rc = -1;
                break;
            }
        }
        if (value != Py_None) {
            if ((!first && out_bytes(&o, ",", 1) < 0) || out_string(&o, name) < 0 ||
                out_bytes(&o, ":", 1) < 0)
                rc = -1;
            else rc = out_value(&o, value, 1);
            first = 0;
        }
        Py_DECREF(value);
    }
    PyObject *line = NULL;
    if (rc == 1 && out_bytes(&o, "}\n", 2) == 0) line = PyBytes_FromStringAndSize(o.buf, o.len);
    if (o.buf != o.stack) PyMem_Free(o.buf);
    if (rc == 0) Py_RETURN_NONE;
    return line;
}

static PyMethodDef jsonline_methods[] = {
    {"json_record", json_record, METH_VARARGS,
     "json_record(record, names[, members]) -> bytes or None\n\n"
     "The record's attributes named (given sorted), those that are None left out, as one "
     "compact JSON line with json_line's escapes, UTF-8, ending in a newline; None for a "
     "value it leaves to json. "
     "members: the names' slot member descriptors, read directly."},
    {NULL, NULL, 0, NULL},
};

int dw_add_jsonline(PyObject *module) {
    return PyModule_AddFunctions(module, jsonline_methods);
}
