/* DumlCounter: the frames of a DJI Wi-Fi link (DUML v1), counted as
 * `dronewatch.analyzers.dji_wifi.DumlCounter` (its Python twin) counts them.
 *
 * A datagram's frame is searched for in its first `window` bytes (a valid header CRC-8); from
 * there whole frames are counted while each passes both checksums. Facts of the format: see the
 * docstring of dronewatch/analyzers/dji_wifi.py.
 */
#include "_counters.h"

#include <string.h>
#include <structmember.h>

#define DUML_SOF 0x55
#define DUML_MIN_LEN 13 /* 11-byte header, 2-byte CRC-16 */
#define DUML_CRC8_INIT 0x77
#define DUML_CRC16_INIT 0x3692
#define DUML_RESPONSE 0x80
#define DUML_MAX_COMMANDS 256 /* distinct (cmd set, cmd id) kept per flow */

static uint8_t crc8_table[256];
static uint16_t crc16_table[256];

static void make_tables(void) {
    for (int byte = 0; byte < 256; byte++) {
        uint8_t c8 = (uint8_t)byte;
        uint16_t c16 = (uint16_t)byte;
        for (int bit = 0; bit < 8; bit++) {
            c8 = (c8 & 1) ? (uint8_t)((c8 >> 1) ^ 0x8C) : (uint8_t)(c8 >> 1);    /* 0x31 reflected */
            c16 = (c16 & 1) ? (uint16_t)((c16 >> 1) ^ 0x8408) : (uint16_t)(c16 >> 1); /* 0x1021 */
        }
        crc8_table[byte] = c8;
        crc16_table[byte] = c16;
    }
}

static inline int header_ok(const uint8_t *d, Py_ssize_t left) {
    if (left < 4 || d[0] != DUML_SOF) return 0;
    uint8_t crc = crc8_table[crc8_table[crc8_table[DUML_CRC8_INIT ^ d[0]] ^ d[1]] ^ d[2]];
    return crc == d[3];
}

static inline int frame_len(const uint8_t *d) { return (d[1] | (d[2] << 8)) & 0x3FF; }

static uint16_t crc16(const uint8_t *d, Py_ssize_t n) {
    uint16_t crc = DUML_CRC16_INIT;
    for (Py_ssize_t i = 0; i < n; i++) crc = (uint16_t)((crc >> 8) ^ crc16_table[(crc ^ d[i]) & 0xFF]);
    return crc;
}

typedef struct {
    dw_FrameCounter base;
    Py_ssize_t window;
    long long frames, crc_errors, responses;
    Py_ssize_t wrapper_len; /* -1: none seen */
    uint8_t senders[4], receivers[4]; /* device types (low five bits) as bit sets */
    long long cmd_sets[256];
    int ncommands;
    uint16_t command_keys[DUML_MAX_COMMANDS]; /* cmd set << 8 | cmd id, in first-seen order */
    long long command_counts[DUML_MAX_COMMANDS];
} DumlCounter;

static Py_ssize_t duml_feed(dw_FrameCounter *self_, const uint8_t *d, Py_ssize_t n,
                            int from_orig) {
    DumlCounter *s = (DumlCounter *)self_;
    Py_ssize_t limit = s->window < n ? s->window : n, pos = -1;
    for (Py_ssize_t i = 0; i < limit; i++) {
        if (d[i] == DUML_SOF && header_ok(d + i, n - i) && frame_len(d + i) >= DUML_MIN_LEN) {
            pos = i;
            break;
        }
    }
    if (pos < 0) return 0;
    if (pos && s->wrapper_len < 0) s->wrapper_len = pos;
    Py_ssize_t counted = 0;
    while (pos < n && header_ok(d + pos, n - pos)) {
        Py_ssize_t length = frame_len(d + pos), end = pos + length;
        if (length < DUML_MIN_LEN || end > n) break;
        uint16_t sent = (uint16_t)(d[end - 2] | (d[end - 1] << 8));
        if (crc16(d + pos, length - 2) != sent) {
            s->crc_errors++;
            break;
        }
        const uint8_t *f = d + pos;
        counted++;
        s->frames++;
        if (f[8] & DUML_RESPONSE) s->responses++;
        s->cmd_sets[f[9]]++;
        uint16_t key = (uint16_t)(f[9] << 8 | f[10]);
        int k = 0;
        while (k < s->ncommands && s->command_keys[k] != key) k++;
        if (k < s->ncommands) {
            s->command_counts[k]++;
        } else if (s->ncommands < DUML_MAX_COMMANDS) {
            s->command_keys[k] = key;
            s->command_counts[k] = 1;
            s->ncommands++;
        }
        s->senders[(f[4] & 0x1F) >> 3] |= (uint8_t)(1 << (f[4] & 7));
        s->receivers[(f[5] & 0x1F) >> 3] |= (uint8_t)(1 << (f[5] & 7));
        pos = end;
    }
    return counted;
}

static PyObject *duml_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    DumlCounter *s = (DumlCounter *)PyType_GenericNew(type, args, kwds); /* zeroed */
    if (s == NULL) return NULL;
    s->base.feed = duml_feed;
    s->window = 16;
    s->wrapper_len = -1;
    return (PyObject *)s;
}

static int duml_init(PyObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"window", NULL};
    DumlCounter *s = (DumlCounter *)self;
    Py_ssize_t window = 16;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", kwlist, &window)) return -1;
    if (window < 0) {
        PyErr_SetString(PyExc_ValueError, "DumlCounter: window must be 0 or more bytes");
        return -1;
    }
    s->window = window;
    return 0;
}

static PyObject *get_senders(PyObject *self, void *closure) {
    return dw_bit_set(((DumlCounter *)self)->senders, 32);
}

static PyObject *get_receivers(PyObject *self, void *closure) {
    return dw_bit_set(((DumlCounter *)self)->receivers, 32);
}

static PyObject *get_wrapper_len(PyObject *self, void *closure) {
    Py_ssize_t w = ((DumlCounter *)self)->wrapper_len;
    if (w < 0) Py_RETURN_NONE;
    return PyLong_FromSsize_t(w);
}

static PyObject *get_cmd_sets(PyObject *self, void *closure) {
    DumlCounter *s = (DumlCounter *)self;
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (int i = 0; out != NULL && i < 256; i++) {
        if (s->cmd_sets[i] && dw_dict_count(out, PyLong_FromLong(i), s->cmd_sets[i]) < 0)
            Py_CLEAR(out);
    }
    return out;
}

static PyObject *get_commands(PyObject *self, void *closure) {
    DumlCounter *s = (DumlCounter *)self;
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (int i = 0; out != NULL && i < s->ncommands; i++) {
        uint16_t key = s->command_keys[i];
        PyObject *k = Py_BuildValue("(ii)", key >> 8, key & 0xFF);
        if (dw_dict_count(out, k, s->command_counts[i]) < 0) Py_CLEAR(out);
    }
    return out;
}

static PyMemberDef duml_members[] = {
    {"window", T_PYSSIZET, offsetof(DumlCounter, window), READONLY,
     "Bytes at the start of a datagram searched for a frame."},
    {"frames", T_LONGLONG, offsetof(DumlCounter, frames), READONLY,
     "Frames that passed both checksums."},
    {"crc_errors", T_LONGLONG, offsetof(DumlCounter, crc_errors), READONLY,
     "Frames with a valid header whose frame checksum did not match."},
    {"responses", T_LONGLONG, offsetof(DumlCounter, responses), READONLY,
     "Frames with the response bit set."},
    {NULL},
};

static PyGetSetDef duml_getset[] = {
    {"senders", get_senders, NULL, "Device types (low five bits) that sent frames.", NULL},
    {"receivers", get_receivers, NULL, "Device types frames were sent to.", NULL},
    {"wrapper_len", get_wrapper_len, NULL, "Bytes before the first frame, or None.", NULL},
    {"cmd_sets", get_cmd_sets, NULL, "Frames per command set.", NULL},
    {"commands", get_commands, NULL,
     "Frames per (command set, command id), the first 256 distinct ones.", NULL},
    {NULL},
};

PyTypeObject dw_DumlCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.DumlCounter",
    .tp_doc = "DumlCounter(window=16): counts the DUML frames of one DJI Wi-Fi link flow.",
    .tp_basicsize = sizeof(DumlCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = duml_new,
    .tp_init = duml_init,
    .tp_members = duml_members,
    .tp_getset = duml_getset,
};

void dw_duml_tables(void) { make_tables(); }
