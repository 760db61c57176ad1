/* A DNS message read off the wire (RFC 1035 4.1), as dronewatch.analyzers.dns's Python reader
   reads it: the same DnsMessage, DnsQuestion and DnsResource objects, the same DecodeError
   messages, the same names (labels decoded as UTF-8 with backslash escapes, a compression
   pointer's target decoded once per message and kept in a dict the Python renderer shares).

   dns_setup(question, question_members, resource, resource_members, message, message_members,
   render, error) is called once by the analyzer: the three classes with the member descriptors
   of their fields in field order (filled as _record.c fills a record), the Python function that
   renders the records it does not render itself (render(rtype, owner, data, start, end, names)
   -> str or None), and DecodeError. dns_parse(data, extra, text) -> DnsMessage then does what
   parse_dns_message(data, extra=extra, text=text) does in Python. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <string.h>

#define NAME_MAX_WIRE 255  /* RFC 1035 2.3.4 */
#define MAX_POINTER_HOPS 128
#define TYPE_A 1
#define TYPE_NS 2
#define TYPE_CNAME 5
#define TYPE_PTR 12
#define TYPE_MX 15
#define TYPE_AAAA 28
#define TYPE_SRV 33
#define TYPE_DNAME 39

int dw_check_members(PyTypeObject *cls, PyObject *members);
PyObject *dw_new_record(PyTypeObject *cls, PyObject *members, PyObject *const *values);

static PyTypeObject *question_cls, *resource_cls, *message_cls;
static PyObject *question_members, *resource_members, *message_members;
static PyObject *render_fn, *decode_error;

typedef struct {
    PyObject *data; /* the message, as given */
    const unsigned char *p;
    Py_ssize_t size;
    PyObject *names; /* offset -> (text, wire length), made at the first pointer */
} Msg;

static int fail(const char *why) {
    PyErr_SetString(decode_error, why);
    return -1;
}

/* The name at off: its text (a new reference) in *text, its wire length, and the offset past
   it in *next. */
static int read_name(Msg *m, Py_ssize_t off, int depth, PyObject **text, Py_ssize_t *wire,
                     Py_ssize_t *next) {
    unsigned char raw[NAME_MAX_WIRE + 1];
    Py_ssize_t raw_len = 0, wire_len = 1;
    PyObject *known = NULL; /* the pointer target's text, borrowed from its tuple */
    PyObject *entry = NULL;
    for (;;) {
        if (off >= m->size) return fail("name runs past the end of the message");
        unsigned n = m->p[off];
        if (n == 0) {
            *next = off + 1;
            break;
        }
        unsigned kind = n & 0xC0;
        if (kind == 0xC0) {
            if (off + 1 >= m->size) return fail("truncated compression pointer");
            long target = (long)((n & 0x3F) << 8 | m->p[off + 1]);
            PyObject *key = PyLong_FromLong(target);
            if (key == NULL) return -1;
            if (m->names == NULL && (m->names = PyDict_New()) == NULL) {
                Py_DECREF(key);
                return -1;
            }
            entry = PyDict_GetItemWithError(m->names, key);
            if (entry == NULL) {
                if (PyErr_Occurred()) {
                    Py_DECREF(key);
                    return -1;
                }
                if (depth >= MAX_POINTER_HOPS) {
                    Py_DECREF(key);
                    return fail("compression pointer loop");
                }
                PyObject *t;
                Py_ssize_t len, ignored;
                if (read_name(m, target, depth + 1, &t, &len, &ignored) < 0) {
                    Py_DECREF(key);
                    return -1;
                }
                entry = Py_BuildValue("(Nn)", t, len);
                if (entry == NULL || PyDict_SetItem(m->names, key, entry) < 0) {
                    Py_XDECREF(entry);
                    Py_DECREF(key);
                    return -1;
                }
                Py_DECREF(entry); /* the dict holds it */
            }
            Py_DECREF(key);
            Py_INCREF(entry);
            wire_len += PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1)) - 1;
            if (wire_len > NAME_MAX_WIRE) {
                Py_DECREF(entry);
                return fail("name longer than 255 bytes");
            }
            known = PyTuple_GET_ITEM(entry, 0);
            *next = off + 2;
            break;
        }
        if (kind) {
            char why[40];
            snprintf(why, sizeof why, "unsupported label type %#04x", n);
            return fail(why);
        }
        Py_ssize_t start = off + 1;
        off = start + n;
        if (off > m->size) return fail("label runs past the end of the message");
        wire_len += n + 1;
        if (wire_len > NAME_MAX_WIRE) return fail("name longer than 255 bytes");
        if (raw_len) raw[raw_len++] = '.';
        memcpy(raw + raw_len, m->p + start, n);
        raw_len += n;
    }
    /* Labels joined by dots and decoded at once: a dot never continues a UTF-8 sequence, so
       each label's bytes decode (and escape) as they would alone. */
    PyObject *labels = PyUnicode_DecodeUTF8((const char *)raw, raw_len, "backslashreplace");
    if (labels == NULL) {
        Py_XDECREF(entry);
        return -1;
    }
    if (known != NULL && PyUnicode_GET_LENGTH(known)) {
        if (raw_len) {
            PyObject *joined = PyUnicode_FromFormat("%U.%U", labels, known);
            Py_DECREF(labels);
            labels = joined;
        } else {
            Py_DECREF(labels);
            Py_INCREF(known);
            labels = known;
        }
    }
    Py_XDECREF(entry);
    if (labels == NULL) return -1;
    *text = labels;
    *wire = wire_len;
    return 0;
}

static PyObject *name_at(Msg *m, Py_ssize_t off) { /* the text of the name at off */
    PyObject *text;
    Py_ssize_t wire, next;
    return read_name(m, off, 0, &text, &wire, &next) < 0 ? NULL : text;
}

static unsigned read16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* The resource record at *off, *off moved past it. */
static PyObject *read_resource(Msg *m, Py_ssize_t *off, int text) {
    PyObject *name;
    Py_ssize_t wire, at;
    if (read_name(m, *off, 0, &name, &wire, &at) < 0) return NULL;
    if (at + 10 > m->size) {
        Py_DECREF(name);
        fail("truncated resource record");
        return NULL;
    }
    const unsigned char *f = m->p + at;
    unsigned rtype = read16(f), rclass = read16(f + 2), rdlen = read16(f + 8);
    unsigned long ttl = (unsigned long)f[4] << 24 | (unsigned long)f[5] << 16 |
                        (unsigned long)f[6] << 8 | f[7];
    Py_ssize_t start = at + 10, end = start + rdlen;
    if (end > m->size) {
        Py_DECREF(name);
        fail("record data runs past the end of the message");
        return NULL;
    }
    PyObject *value = NULL, *rendered = NULL, *rdata = NULL, *out = NULL;
    if ((rtype == TYPE_A && rdlen == 4) || (rtype == TYPE_AAAA && rdlen == 16)) {
        char buf[INET6_ADDRSTRLEN];
        if (inet_ntop(rdlen == 4 ? AF_INET : AF_INET6, m->p + start, buf, sizeof buf) == NULL) {
            PyErr_SetFromErrno(PyExc_OSError);
            goto done;
        }
        value = PyUnicode_FromString(buf);
    } else if ((rtype == TYPE_CNAME || rtype == TYPE_NS || rtype == TYPE_PTR ||
                rtype == TYPE_DNAME) && rdlen) {
        value = name_at(m, start);
    } else if (rtype == TYPE_SRV && rdlen > 6) { /* priority, weight, port, target */
        value = name_at(m, start + 6);
    } else if (rtype == TYPE_MX && rdlen > 2) { /* preference, exchange */
        value = name_at(m, start + 2);
    } else {
        value = Py_None;
        Py_INCREF(value);
    }
    if (value == NULL) goto done;
    if (text && value != Py_None && rtype != TYPE_DNAME) { /* an address or a target name */
        if (rtype == TYPE_A || rtype == TYPE_AAAA) {
            rendered = value;
            Py_INCREF(rendered);
        } else {
            rendered = PyObject_CallMethod(value, "lower", NULL);
        }
    } else if (text) {
        if (m->names == NULL && (m->names = PyDict_New()) == NULL) goto done;
        rendered = PyObject_CallFunction(render_fn, "IOOnnO", rtype, name, m->data, start, end,
                                         m->names);
        if (rendered == NULL && PyErr_ExceptionMatches(decode_error)) {
            PyErr_Clear(); /* a name inside the data that does not parse: nothing to show */
            rendered = Py_None;
            Py_INCREF(rendered);
        }
    } else {
        rendered = Py_None;
        Py_INCREF(rendered);
    }
    if (rendered == NULL) goto done;
    rdata = PyBytes_FromStringAndSize((const char *)m->p + start, rdlen);
    if (rdata == NULL) goto done;
    {
        PyObject *rt = PyLong_FromUnsignedLong(rtype), *rc = PyLong_FromUnsignedLong(rclass),
                 *tl = PyLong_FromUnsignedLong(ttl);
        if (rt != NULL && rc != NULL && tl != NULL) {
            PyObject *values[] = {name, rt, rc, tl, rdata, value, rendered};
            out = dw_new_record(resource_cls, resource_members, values);
        }
        Py_XDECREF(rt);
        Py_XDECREF(rc);
        Py_XDECREF(tl);
    }
    *off = end;
done:
    Py_DECREF(name);
    Py_XDECREF(value);
    Py_XDECREF(rendered);
    Py_XDECREF(rdata);
    return out;
}

static PyObject *dns_parse(PyObject *self, PyObject *args) {
    PyObject *data;
    int extra, text;
    if (!PyArg_ParseTuple(args, "Spp:dns_parse", &data, &extra, &text)) return NULL;
    if (question_cls == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "dns_parse before dns_setup");
        return NULL;
    }
    Msg m = {data, (const unsigned char *)PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), NULL};
    if (m.size < 12) {
        PyErr_Format(decode_error, "%zd bytes is shorter than a DNS header", m.size);
        return NULL;
    }
    unsigned trans_id = read16(m.p), flags = read16(m.p + 2), qdcount = read16(m.p + 4),
             ancount = read16(m.p + 6), nscount = read16(m.p + 8), arcount = read16(m.p + 10);
    Py_ssize_t off = 12;
    PyObject *questions = PyList_New(0), *answers = PyList_New(0), *others = PyList_New(0);
    PyObject *out = NULL;
    if (questions == NULL || answers == NULL || others == NULL) goto done;
    for (unsigned i = 0; i < qdcount; i++) {
        PyObject *name;
        Py_ssize_t wire;
        if (read_name(&m, off, 0, &name, &wire, &off) < 0) goto done;
        if (off + 4 > m.size) {
            Py_DECREF(name);
            fail("truncated question");
            goto done;
        }
        PyObject *qt = PyLong_FromUnsignedLong(read16(m.p + off));
        PyObject *qc = PyLong_FromUnsignedLong(read16(m.p + off + 2));
        off += 4;
        PyObject *q = NULL;
        if (qt != NULL && qc != NULL) {
            PyObject *values[] = {name, qt, qc};
            q = dw_new_record(question_cls, question_members, values);
        }
        Py_DECREF(name);
        Py_XDECREF(qt);
        Py_XDECREF(qc);
        if (q == NULL || PyList_Append(questions, q) < 0) {
            Py_XDECREF(q);
            goto done;
        }
        Py_DECREF(q);
    }
    for (unsigned i = 0; i < ancount; i++) {
        PyObject *rr = read_resource(&m, &off, text);
        if (rr == NULL || PyList_Append(answers, rr) < 0) {
            Py_XDECREF(rr);
            goto done;
        }
        Py_DECREF(rr);
    }
    if (extra) { /* as far as they parse: a damaged additional section spoils nothing else */
        for (unsigned i = 0; i < nscount + arcount; i++) {
            PyObject *rr = read_resource(&m, &off, text);
            if (rr == NULL) {
                if (!PyErr_ExceptionMatches(decode_error)) goto done;
                PyErr_Clear();
                break;
            }
            int rc = PyList_Append(others, rr);
            Py_DECREF(rr);
            if (rc < 0) goto done;
        }
    }
    {
        Py_ssize_t n_others = PyList_GET_SIZE(others);
        PyObject *values[] = {
            PyLong_FromUnsignedLong(trans_id),
            PyLong_FromUnsignedLong(flags),
            PyList_AsTuple(questions),
            PyList_AsTuple(answers),
            PyList_AsTuple(others),
            PyLong_FromSsize_t((Py_ssize_t)nscount < n_others ? (Py_ssize_t)nscount : n_others),
        };
        int ok = 1;
        for (int i = 0; i < 6; i++) ok &= values[i] != NULL;
        if (ok) out = dw_new_record(message_cls, message_members, values);
        for (int i = 0; i < 6; i++) Py_XDECREF(values[i]);
    }
done:
    Py_XDECREF(questions);
    Py_XDECREF(answers);
    Py_XDECREF(others);
    Py_XDECREF(m.names);
    return out;
}

static PyObject *dns_setup(PyObject *self, PyObject *args) {
    PyTypeObject *q, *r, *msg;
    PyObject *qm, *rm, *mm, *render, *error;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!O!OO:dns_setup", &PyType_Type, &q, &PyTuple_Type, &qm,
                          &PyType_Type, &r, &PyTuple_Type, &rm, &PyType_Type, &msg, &PyTuple_Type,
                          &mm, &render, &error))
        return NULL;
    if (PyTuple_GET_SIZE(qm) != 3 || PyTuple_GET_SIZE(rm) != 7 || PyTuple_GET_SIZE(mm) != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "dns_setup: a question has 3 fields, a resource 7, a message 6");
        return NULL;
    }
    if (dw_check_members(q, qm) < 0 || dw_check_members(r, rm) < 0 ||
        dw_check_members(msg, mm) < 0)
        return NULL;
    if (!PyCallable_Check(render) || !PyExceptionClass_Check(error)) {
        PyErr_SetString(PyExc_TypeError, "dns_setup: render must be callable, error a class");
        return NULL;
    }
    PyObject *refs[] = {(PyObject *)q, qm, (PyObject *)r, rm, (PyObject *)msg, mm, render, error};
    for (int i = 0; i < 8; i++) Py_INCREF(refs[i]);
    Py_XSETREF(question_cls, q);
    Py_XSETREF(question_members, qm);
    Py_XSETREF(resource_cls, r);
    Py_XSETREF(resource_members, rm);
    Py_XSETREF(message_cls, msg);
    Py_XSETREF(message_members, mm);
    Py_XSETREF(render_fn, render);
    Py_XSETREF(decode_error, error);
    Py_RETURN_NONE;
}

static PyMethodDef dns_methods[] = {
    {"dns_setup", dns_setup, METH_VARARGS,
     "dns_setup(question, question_members, resource, resource_members, message, "
     "message_members, render, error)\n\nThe classes dns_parse makes, the renderer of the "
     "records it does not render itself, and the error it raises."},
    {"dns_parse", dns_parse, METH_VARARGS,
     "dns_parse(data, extra, text) -> DnsMessage\n\n"
     "parse_dns_message(data, extra=extra, text=text), read in C."},
    {NULL, NULL, 0, NULL},
};

int dw_add_dns(PyObject *module) {
    return PyModule_AddFunctions(module, dns_methods);
}
