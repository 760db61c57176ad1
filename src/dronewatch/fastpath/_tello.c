/* TelloStateCounter: the SDK state strings of one Tello state flow (UDP 8890), counted and read
 * as `dronewatch.analyzers.tello.TelloStateCounter` (its Python twin) reads them.
 *
 * A state string is printable ASCII such as `pitch:0;roll:0;...;bat:87;...;` (at most 512 bytes,
 * CR, LF, tab, space and NUL trimmed at both ends): pieces split on `;`, each trimmed of spaces,
 * empty ones skipped, every other one `key:value` with a non-empty key (the last value of a key
 * wins), and at least three distinct keys of the SDK's. A datagram that is not one counts
 * nothing. Of a string that is, the last battery, height, time-of-flight and temperature values
 * are kept, each read as Python's `round(float(value))`; a value that is no finite number keeps
 * the one before. Facts of the format: see the docstring of dronewatch/analyzers/tello.py.
 */
#include "_counters.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

#define TELLO_MAX_TEXT 512
#define NVALUES 5

/* The SDK state string's keys (TELLO_STATE_KEYS); the first NVALUES are the ones kept. */
static const char *const state_keys[] = {
    "bat", "h", "tof", "templ", "temph", "mid", "x", "y", "z", "mpry", "pitch",
    "roll", "yaw", "vgx", "vgy", "vgz", "baro", "time", "agx", "agy", "agz",
};
#define NKEYS ((int)(sizeof state_keys / sizeof state_keys[0]))

typedef struct {
    dw_FrameCounter base;
    long long packets;
    PyObject *values[NVALUES]; /* bat, h, tof, templ, temph: int, or NULL (None) */
} TelloStateCounter;

static int is_trimmed(uint8_t c) { return c == '\r' || c == '\n' || c == '\t' || c == ' ' || !c; }

static int key_index(const uint8_t *k, Py_ssize_t n) {
    for (int i = 0; i < NKEYS; i++)
        if ((Py_ssize_t)strlen(state_keys[i]) == n && memcmp(state_keys[i], k, (size_t)n) == 0)
            return i;
    return -1;
}

/* round(float(value)) as a Python int, or NULL (no error set) when float() refuses the text or
 * the number is not finite. */
static PyObject *read_value(const uint8_t *v, Py_ssize_t n) {
    Py_ssize_t i = (n > 0 && (v[0] == '-' || v[0] == '+')) ? 1 : 0, digits = n - i;
    if (digits >= 1 && digits <= 15) { /* the usual `87`, `-3`: exact as a double, so as an int */
        long long x = 0;
        Py_ssize_t j = i;
        while (j < n && v[j] >= '0' && v[j] <= '9') x = x * 10 + (v[j++] - '0');
        if (j == n) return PyLong_FromLongLong(v[0] == '-' ? -x : x);
    }
    PyObject *text = PyUnicode_FromStringAndSize((const char *)v, n); /* printable ASCII */
    PyObject *num = text != NULL ? PyFloat_FromString(text) : NULL;
    Py_XDECREF(text);
    if (num == NULL) {
        PyErr_Clear(); /* float() refuses it (ValueError): the value is not kept */
        return NULL;
    }
    double x = PyFloat_AS_DOUBLE(num);
    Py_DECREF(num);
    if (!isfinite(x)) return NULL;
    PyObject *out = PyLong_FromDouble(rint(x)); /* round(): halves to even, as rint */
    if (out == NULL) PyErr_Clear();
    return out;
}

static Py_ssize_t tello_feed(dw_FrameCounter *self, const uint8_t *data, Py_ssize_t len,
                             int from_orig) {
    TelloStateCounter *s = (TelloStateCounter *)self;
    if (len == 0 || len > TELLO_MAX_TEXT) return -1;
    Py_ssize_t a = 0, b = len;
    while (a < b && is_trimmed(data[a])) a++;
    while (b > a && is_trimmed(data[b - 1])) b--;
    if (a == b) return -1;
    for (Py_ssize_t i = a; i < b; i++)
        if (data[i] < 0x20 || data[i] > 0x7E) return -1; /* not ASCII, or not printable */
    uint32_t seen = 0;
    const uint8_t *value_at[NVALUES] = {NULL};
    Py_ssize_t value_len[NVALUES] = {0};
    for (Py_ssize_t p = a; p <= b;) {
        Py_ssize_t q = p;
        while (q < b && data[q] != ';') q++;
        Py_ssize_t x = p, y = q;
        p = q + 1;
        while (x < y && data[x] == ' ') x++;
        while (y > x && data[y - 1] == ' ') y--;
        if (x == y) continue;
        const uint8_t *colon = memchr(data + x, ':', (size_t)(y - x));
        if (colon == NULL || colon == data + x) return -1; /* a piece without a key */
        int k = key_index(data + x, colon - (data + x));
        if (k < 0) continue;
        seen |= 1u << k;
        if (k < NVALUES) {
            value_at[k] = colon + 1;
            value_len[k] = (data + y) - (colon + 1);
        }
    }
    int known = 0;
    for (uint32_t m = seen; m; m &= m - 1) known++;
    if (known < 3) return -1; /* not a Tello state string */
    s->packets++;
    for (int k = 0; k < NVALUES; k++) {
        if (value_at[k] == NULL) continue;
        PyObject *v = read_value(value_at[k], value_len[k]);
        if (v != NULL) Py_XSETREF(s->values[k], v);
    }
    return 1;
}

static PyObject *tello_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    if ((kwds != NULL && PyDict_GET_SIZE(kwds) != 0) || PyTuple_GET_SIZE(args) != 0) {
        PyErr_SetString(PyExc_TypeError, "TelloStateCounter() takes no arguments");
        return NULL;
    }
    TelloStateCounter *s = (TelloStateCounter *)PyType_GenericNew(type, args, kwds); /* zeroed */
    if (s == NULL) return NULL;
    s->base.feed = tello_feed;
    return (PyObject *)s;
}

static void tello_dealloc(PyObject *self) {
    TelloStateCounter *s = (TelloStateCounter *)self;
    for (int k = 0; k < NVALUES; k++) Py_CLEAR(s->values[k]);
    Py_TYPE(self)->tp_free(self);
}

#define VALUE(name, k, doc)                                                                       \
    {name, T_OBJECT, offsetof(TelloStateCounter, values) + (k) * sizeof(PyObject *), READONLY, doc}
static PyMemberDef tello_members[] = {
    {"packets", T_LONGLONG, offsetof(TelloStateCounter, packets), READONLY,
     "Datagrams that were SDK state strings."},
    VALUE("battery", 0, "Last `bat`, or None."),
    VALUE("height", 1, "Last `h` (cm), or None."),
    VALUE("tof", 2, "Last `tof` (cm), or None."),
    VALUE("temp_low", 3, "Last `templ` (C), or None."),
    VALUE("temp_high", 4, "Last `temph` (C), or None."),
    {NULL},
};
#undef VALUE

PyTypeObject dw_TelloStateCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.TelloStateCounter",
    .tp_doc = "TelloStateCounter(): counts and reads the SDK state strings of one Tello state "
              "flow.",
    .tp_basicsize = sizeof(TelloStateCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = tello_new,
    .tp_dealloc = tello_dealloc,
    .tp_members = tello_members,
};
