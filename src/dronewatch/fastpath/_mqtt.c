/* MqttCounter: the PUBLISH counts of one MQTT flow, which the C walk can feed itself.
 *
 * `dronewatch.analyzers.mqtt` reads an MQTT flow's byte streams (CONNECT, SUBSCRIBE, the first
 * PUBLISH of each topic, aliases, anything cut over segments) and keeps each (direction, topic)'s
 * publish count, payload bytes and highest QoS here. Once a direction is at a packet boundary
 * with nothing buffered and the broker has answered (`ready`), a segment made only of whole
 * packets the analyzer would merely count (PUBLISHes of topics it already knows, without a topic
 * alias; acknowledgements, pings and the like) is counted by `feed` with no call into Python:
 * by the stream layer on the per-packet path and by the C walk on the bulk path, so both give the
 * same counts. Anything else, or anything malformed, is refused whole (-1, nothing changed) and
 * goes to the analyzer, whose reading it then is.
 *
 * Layout facts: MQTT 3.1.1 (OASIS, 2014) sections 2.2 and 3.3; MQTT 5.0 (OASIS, 2019) sections
 * 1.5.5 (variable byte integer), 2.2.2 (properties) and 3.3 (PUBLISH, topic alias 0x23).
 */
#include "_counters.h"

#include <structmember.h>

#define MQTT_CONNECT 1
#define MQTT_PUBLISH 3
#define MQTT_SUBSCRIBE 8
#define PROP_TOPIC_ALIAS 0x23

typedef struct {
    dw_FrameCounter base;
    int level;    /* 3, 4 or 5 (0: not known yet) */
    int ready[2]; /* each direction at a packet boundary, nothing buffered, broker answered */
    PyObject *index; /* bytes (direction byte + topic) -> int index */
    Py_ssize_t n, cap;
    long long *publishes, *payload;
    int *qos;
} MqttCounter;

/* A variable byte integer at d[*pos] (before `end`): its value, or -1 when truncated or longer
 * than four bytes. */
static long varint(const uint8_t *d, Py_ssize_t end, Py_ssize_t *pos) {
    long value = 0;
    for (int shift = 0; shift < 28; shift += 7) {
        if (*pos >= end) return -1;
        uint8_t b = d[(*pos)++];
        value |= (long)(b & 0x7F) << shift;
        if (!(b & 0x80)) return value;
    }
    return -1;
}

/* A two-byte length and that many bytes at d[*pos], all before `end`: 0, or -1. */
static int field(const uint8_t *d, Py_ssize_t end, Py_ssize_t *pos) {
    if (*pos + 2 > end) return -1;
    Py_ssize_t n = (Py_ssize_t)d[*pos] << 8 | d[*pos + 1];
    if (*pos + 2 + n > end) return -1;
    *pos += 2 + n;
    return 0;
}

/* MQTT 5 properties at d[*pos] (the body ends at `end`), each wholly inside them and of a known
 * id; -1 for anything else and for a topic alias (the analyzer resolves those). */
static int properties(const uint8_t *d, Py_ssize_t end, Py_ssize_t *pos) {
    long len = varint(d, end, pos);
    if (len < 0 || *pos + len > end) return -1;
    Py_ssize_t stop = *pos + len;
    while (*pos < stop) {
        uint8_t id = d[(*pos)++];
        switch (id) {
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: /* byte */
            *pos += 1;
            break;
        case 0x13: case 0x21: case 0x22: /* two-byte integer */
            *pos += 2;
            break;
        case 0x02: case 0x11: case 0x18: case 0x27: /* four-byte integer */
            *pos += 4;
            break;
        case 0x0B: /* variable byte integer */
            if (varint(d, stop, pos) < 0) return -1;
            break;
        case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1A: case 0x1C:
        case 0x1F: /* UTF-8 string or binary data */
            if (field(d, stop, pos) < 0) return -1;
            break;
        case 0x26: /* string pair */
            if (field(d, stop, pos) < 0 || field(d, stop, pos) < 0) return -1;
            break;
        default: /* the topic alias (0x23), or an id the analyzer would reject */
            return -1;
        }
        if (*pos > stop) return -1;
    }
    return 0;
}

/* The index of the known topic of the PUBLISH body d[0:n] sent from `side`, with its QoS and
 * payload length; -1 when the analyzer is to read it (unknown topic, alias, malformed), -2 on
 * an error (exception set). */
static Py_ssize_t publish(MqttCounter *s, int side, uint8_t first, const uint8_t *d, Py_ssize_t n,
                          int *qos, Py_ssize_t *size) {
    *qos = (first >> 1) & 0x03;
    if (*qos == 3 || n < 2) return -1;
    Py_ssize_t tlen = (Py_ssize_t)d[0] << 8 | d[1], pos = 2 + tlen;
    if (tlen == 0 || pos > n) return -1;
    if (*qos) pos += 2;
    if (pos > n) return -1;
    if (s->level == 5 && properties(d, n, &pos) < 0) return -1;
    *size = n - pos;
    PyObject *key = PyBytes_FromStringAndSize(NULL, 1 + tlen);
    if (key == NULL) return -2;
    char *k = PyBytes_AS_STRING(key);
    k[0] = (char)side;
    memcpy(k + 1, d + 2, (size_t)tlen);
    PyObject *found = PyDict_GetItemWithError(s->index, key); /* borrowed */
    Py_DECREF(key);
    if (found == NULL) return PyErr_Occurred() ? -2 : -1;
    return PyLong_AsSsize_t(found);
}

/* The packets of one segment, read twice: every one is checked before any is counted. */
static Py_ssize_t mqtt_walk(MqttCounter *s, const uint8_t *d, Py_ssize_t n, int side, int commit) {
    Py_ssize_t pos = 0, packets = 0;
    while (pos < n) {
        if (n - pos < 2) return -1;
        uint8_t first = d[pos];
        Py_ssize_t at = pos + 1;
        long len = varint(d, n, &at);
        if (len < 0 || at + len > n) return -1; /* cut, or no MQTT framing: the analyzer's */
        int kind = first >> 4;
        if (kind == MQTT_PUBLISH) {
            int qos;
            Py_ssize_t size, i = publish(s, side, first, d + at, (Py_ssize_t)len, &qos, &size);
            if (i < 0) return i == -2 ? -2 : -1;
            if (commit) {
                s->publishes[i]++;
                s->payload[i] += size;
                if (qos > s->qos[i]) s->qos[i] = qos;
            }
        } else if (side == 0 && (kind == MQTT_CONNECT || kind == MQTT_SUBSCRIBE)) {
            return -1; /* a record or a topic of the analyzer's */
        }
        pos = at + len;
        packets++;
    }
    return packets;
}

static Py_ssize_t mqtt_feed(dw_FrameCounter *self_, const uint8_t *d, Py_ssize_t n, int from_orig) {
    MqttCounter *s = (MqttCounter *)self_;
    int side = from_orig ? 0 : 1;
    if (!s->ready[side] || !s->level || n <= 0) return -1;
    Py_ssize_t packets = mqtt_walk(s, d, n, side, 0);
    if (packets == -2) {
        PyErr_Clear(); /* out of memory for a key: the analyzer reads it */
        return -1;
    }
    if (packets < 0) return -1;
    return mqtt_walk(s, d, n, side, 1);
}

static PyObject *mqtt_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    MqttCounter *s = (MqttCounter *)PyType_GenericNew(type, args, kwds); /* zeroed */
    if (s == NULL) return NULL;
    s->base.feed = mqtt_feed;
    if ((s->index = PyDict_New()) == NULL) {
        Py_DECREF(s);
        return NULL;
    }
    return (PyObject *)s;
}

static void mqtt_dealloc(PyObject *self) {
    MqttCounter *s = (MqttCounter *)self;
    Py_XDECREF(s->index);
    PyMem_Free(s->publishes);
    PyMem_Free(s->payload);
    PyMem_Free(s->qos);
    Py_TYPE(self)->tp_free(self);
}

static int side_arg(PyObject *arg, int *side) {
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v != 0 && v != 1) {
        PyErr_SetString(PyExc_ValueError, "MqttCounter: side must be 0 (orig) or 1 (resp)");
        return -1;
    }
    *side = (int)v;
    return 0;
}

static PyObject *mqtt_ready(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    int side, flag;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ready(side, flag): 2 arguments");
        return NULL;
    }
    if (side_arg(args[0], &side) < 0 || (flag = PyObject_IsTrue(args[1])) < 0) return NULL;
    ((MqttCounter *)self)->ready[side] = flag;
    Py_RETURN_NONE;
}

static PyObject *mqtt_topic(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    MqttCounter *s = (MqttCounter *)self;
    int side;
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "topic(side, name: str): 2 arguments");
        return NULL;
    }
    if (side_arg(args[0], &side) < 0) return NULL;
    Py_ssize_t tlen;
    const char *text = PyUnicode_AsUTF8AndSize(args[1], &tlen);
    if (text == NULL) return NULL;
    PyObject *key = PyBytes_FromStringAndSize(NULL, 1 + tlen);
    if (key == NULL) return NULL;
    PyBytes_AS_STRING(key)[0] = (char)side;
    memcpy(PyBytes_AS_STRING(key) + 1, text, (size_t)tlen);
    PyObject *found = PyDict_GetItemWithError(s->index, key);
    if (found != NULL) {
        Py_DECREF(key);
        Py_INCREF(found);
        return found;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap ? 2 * s->cap : 8;
        long long *p = PyMem_Realloc(s->publishes, (size_t)cap * sizeof *p);
        if (p != NULL) s->publishes = p;
        long long *b = p != NULL ? PyMem_Realloc(s->payload, (size_t)cap * sizeof *b) : NULL;
        if (b != NULL) s->payload = b;
        int *q = b != NULL ? PyMem_Realloc(s->qos, (size_t)cap * sizeof *q) : NULL;
        if (q == NULL) {
            Py_DECREF(key);
            return PyErr_NoMemory();
        }
        s->qos = q;
        s->cap = cap;
    }
    PyObject *i = PyLong_FromSsize_t(s->n);
    if (i == NULL || PyDict_SetItem(s->index, key, i) < 0) {
        Py_DECREF(key);
        Py_XDECREF(i);
        return NULL;
    }
    Py_DECREF(key);
    s->publishes[s->n] = s->payload[s->n] = 0;
    s->qos[s->n] = 0;
    s->n++;
    return i;
}

static int index_arg(MqttCounter *s, PyObject *arg, Py_ssize_t *i) {
    *i = PyLong_AsSsize_t(arg);
    if (*i == -1 && PyErr_Occurred()) return -1;
    if (*i < 0 || *i >= s->n) {
        PyErr_SetString(PyExc_IndexError, "MqttCounter: no such topic index");
        return -1;
    }
    return 0;
}

static PyObject *mqtt_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    MqttCounter *s = (MqttCounter *)self;
    Py_ssize_t i;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add(index, qos, size): 3 arguments");
        return NULL;
    }
    if (index_arg(s, args[0], &i) < 0) return NULL;
    long qos = PyLong_AsLong(args[1]);
    long long size = PyLong_AsLongLong(args[2]);
    if (PyErr_Occurred()) return NULL;
    s->publishes[i]++;
    s->payload[i] += size;
    if (qos > s->qos[i]) s->qos[i] = (int)qos;
    Py_RETURN_NONE;
}

static PyObject *mqtt_counts(PyObject *self, PyObject *arg) {
    MqttCounter *s = (MqttCounter *)self;
    Py_ssize_t i;
    if (index_arg(s, arg, &i) < 0) return NULL;
    return Py_BuildValue("(LLi)", s->publishes[i], s->payload[i], s->qos[i]);
}

static PyMethodDef mqtt_methods[] = {
    {"ready", (PyCFunction)(void (*)(void))mqtt_ready, METH_FASTCALL,
     "ready(side, flag, /): whether `feed` may count the direction's segments (0 orig, 1 resp)"},
    {"topic", (PyCFunction)(void (*)(void))mqtt_topic, METH_FASTCALL,
     "topic(side, name, /) -> the index of the direction's topic, made on its first call"},
    {"add", (PyCFunction)(void (*)(void))mqtt_add, METH_FASTCALL,
     "add(index, qos, size, /): one PUBLISH of the topic, read by the analyzer"},
    {"counts", (PyCFunction)mqtt_counts, METH_O,
     "counts(index, /) -> (publishes, payload bytes, highest QoS) of the topic"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef mqtt_members[] = {
    {"level", T_INT, offsetof(MqttCounter, level), 0,
     "The flow's MQTT protocol level (3, 4 or 5; 0 while unknown: nothing is fed)."},
    {NULL},
};

PyTypeObject dw_MqttCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.MqttCounter",
    .tp_doc = "MqttCounter(): the PUBLISH counts of one MQTT flow's topics, fed whole segments "
              "of packets it may count by the stream layer or the C walk.",
    .tp_basicsize = sizeof(MqttCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = mqtt_new,
    .tp_dealloc = mqtt_dealloc,
    .tp_members = mqtt_members,
    .tp_methods = mqtt_methods,
};
