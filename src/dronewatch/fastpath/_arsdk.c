/* ArsdkCounter: the ARNetworkAL frames of a Parrot ARSDK link, counted and read as
 * `dronewatch.analyzers.parrot.ArsdkCounter` (its Python twin) does.
 *
 * ARNetworkAL frame: type u8, buffer id u8, sequence u8, size u32 LE (header included), then the
 * data; a datagram holds whole frames and nothing else, or it is not ARSDK at all. A data frame
 * (type 2 or 4) outside the ping/pong buffers carries an ARCommand: project u8, class u8,
 * command u16 LE, then its arguments (little-endian). Facts of the format: see the docstring of
 * dronewatch/analyzers/parrot.py.
 */
#include "_counters.h"

#include <string.h>
#include <structmember.h>

#define ARNET_HEADER_LEN 7
#define ARNET_ACK 1
#define ARNET_DATA 2
#define ARNET_DATA_WITH_ACK 4
#define ARNET_PING_BUFFER 0
#define ARNET_PONG_BUFFER 1
#define ARSDK_POSITION_UNKNOWN 500.0

typedef struct {
    dw_FrameCounter base;
    Py_ssize_t max_names;
    long long messages;
    Py_ssize_t ncommands;
    uint32_t *command_keys; /* project << 24 | class << 16 | command, in first-seen order */
    long long *command_counts;
    int has_battery, has_altitude, has_max_altitude, has_position, has_flying;
    int battery, flying;
    double altitude, max_altitude, lat, lon;
} ArsdkCounter;

static double le_double(const uint8_t *p) {
    uint64_t bits = 0;
    for (int i = 7; i >= 0; i--) bits = bits << 8 | p[i];
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void command_values(ArsdkCounter *s, uint32_t key, const uint8_t *a, Py_ssize_t n) {
    switch (key) {
    case 0x00050001: /* common.CommonState.BatteryStateChanged(percent u8) */
        if (n >= 1) s->battery = a[0], s->has_battery = 1;
        break;
    case 0x01040008: /* ardrone3.PilotingState.AltitudeChanged(altitude double) */
        if (n >= 8) {
            double alt = le_double(a);
            s->altitude = alt, s->has_altitude = 1;
            if (!s->has_max_altitude || alt > s->max_altitude) {
                s->max_altitude = alt, s->has_max_altitude = 1;
            }
        }
        break;
    case 0x01040004: /* ardrone3.PilotingState.PositionChanged(lat, lon, alt double) */
        if (n >= 24) {
            double lat = le_double(a), lon = le_double(a + 8);
            if (lat != ARSDK_POSITION_UNKNOWN && lon != ARSDK_POSITION_UNKNOWN) {
                s->lat = lat, s->lon = lon, s->has_position = 1;
            }
        }
        break;
    case 0x01040001: /* ardrone3.PilotingState.FlyingStateChanged(state enum i32) */
        if (n >= 4) {
            s->flying = (int32_t)((uint32_t)a[0] | (uint32_t)a[1] << 8 | (uint32_t)a[2] << 16 |
                                  (uint32_t)a[3] << 24);
            s->has_flying = 1;
        }
        break;
    }
}

static Py_ssize_t arsdk_feed(dw_FrameCounter *self_, const uint8_t *d, Py_ssize_t n,
                             int from_orig) {
    ArsdkCounter *s = (ArsdkCounter *)self_;
    if (n < ARNET_HEADER_LEN) return -1;
    Py_ssize_t pos = 0, frames = 0;
    while (pos < n) { /* the whole datagram must be frames before any is counted */
        if (n - pos < ARNET_HEADER_LEN) return -1;
        const uint8_t *f = d + pos;
        uint64_t size = (uint64_t)f[3] | (uint64_t)f[4] << 8 | (uint64_t)f[5] << 16 |
                        (uint64_t)f[6] << 24;
        if (f[0] < ARNET_ACK || f[0] > ARNET_DATA_WITH_ACK) return -1;
        if (size < ARNET_HEADER_LEN || size > (uint64_t)(n - pos)) return -1;
        pos += (Py_ssize_t)size;
        frames++;
    }
    s->messages += frames;
    for (pos = 0; pos < n;) {
        const uint8_t *f = d + pos;
        Py_ssize_t size = (Py_ssize_t)((uint32_t)f[3] | (uint32_t)f[4] << 8 |
                                       (uint32_t)f[5] << 16 | (uint32_t)f[6] << 24);
        const uint8_t *cmd = f + ARNET_HEADER_LEN;
        Py_ssize_t len = size - ARNET_HEADER_LEN;
        pos += size;
        if (f[0] != ARNET_DATA && f[0] != ARNET_DATA_WITH_ACK) continue; /* acks, video */
        if (f[1] == ARNET_PING_BUFFER || f[1] == ARNET_PONG_BUFFER) continue;
        if (len < 4) continue;
        uint32_t key = (uint32_t)cmd[0] << 24 | (uint32_t)cmd[1] << 16 | cmd[2] | cmd[3] << 8;
        Py_ssize_t k = 0;
        while (k < s->ncommands && s->command_keys[k] != key) k++;
        if (k < s->ncommands) {
            s->command_counts[k]++;
        } else if (s->ncommands < s->max_names) {
            s->command_keys[k] = key;
            s->command_counts[k] = 1;
            s->ncommands++;
        }
        command_values(s, key, cmd + 4, len - 4);
    }
    return frames;
}

static PyObject *arsdk_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ArsdkCounter *s = (ArsdkCounter *)PyType_GenericNew(type, args, kwds); /* zeroed */
    if (s == NULL) return NULL;
    s->base.feed = arsdk_feed; /* max_names 0 until __init__: counts frames, keeps no name */
    return (PyObject *)s;
}

static int arsdk_init(PyObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_names", NULL};
    ArsdkCounter *s = (ArsdkCounter *)self;
    Py_ssize_t max_names = 64;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n", kwlist, &max_names)) return -1;
    if (max_names < 0 || max_names > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "ArsdkCounter: max_names must be 0 to 1048576");
        return -1;
    }
    uint32_t *keys = PyMem_Calloc(max_names ? max_names : 1, sizeof(uint32_t));
    long long *counts = PyMem_Calloc(max_names ? max_names : 1, sizeof(long long));
    if (keys == NULL || counts == NULL) {
        PyMem_Free(keys);
        PyMem_Free(counts);
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(s->command_keys);
    PyMem_Free(s->command_counts);
    s->command_keys = keys;
    s->command_counts = counts;
    s->max_names = max_names;
    s->ncommands = 0;
    return 0;
}

static void arsdk_dealloc(PyObject *self) {
    ArsdkCounter *s = (ArsdkCounter *)self;
    PyMem_Free(s->command_keys);
    PyMem_Free(s->command_counts);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *get_commands(PyObject *self, void *closure) {
    ArsdkCounter *s = (ArsdkCounter *)self;
    PyObject *out = PyList_New(s->ncommands);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < s->ncommands; i++) {
        uint32_t k = s->command_keys[i];
        PyObject *item = Py_BuildValue("((iii)L)", k >> 24, (k >> 16) & 0xFF, k & 0xFFFF,
                                       s->command_counts[i]);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

#define OPTIONAL(name, has, build)                                                                \
    static PyObject *get_##name(PyObject *self, void *closure) {                                 \
        ArsdkCounter *s = (ArsdkCounter *)self;                                                  \
        if (!s->has) Py_RETURN_NONE;                                                             \
        return build;                                                                            \
    }
OPTIONAL(battery, has_battery, PyLong_FromLong(s->battery))
OPTIONAL(altitude, has_altitude, PyFloat_FromDouble(s->altitude))
OPTIONAL(max_altitude, has_max_altitude, PyFloat_FromDouble(s->max_altitude))
OPTIONAL(position, has_position, Py_BuildValue("(dd)", s->lat, s->lon))
OPTIONAL(flying_state, has_flying, PyLong_FromLong(s->flying))
#undef OPTIONAL

static PyMemberDef arsdk_members[] = {
    {"max_names", T_PYSSIZET, offsetof(ArsdkCounter, max_names), READONLY,
     "Distinct commands counted per flow."},
    {"messages", T_LONGLONG, offsetof(ArsdkCounter, messages), READONLY,
     "ARNetworkAL frames of the datagrams that held only whole frames."},
    {NULL},
};

static PyGetSetDef arsdk_getset[] = {
    {"commands", get_commands, NULL,
     "[((project, class, command), frames)] in first-seen order, max_names of them.", NULL},
    {"battery", get_battery, NULL, "Last BatteryStateChanged percent, or None.", NULL},
    {"altitude", get_altitude, NULL, "Last AltitudeChanged altitude, or None.", NULL},
    {"max_altitude", get_max_altitude, NULL, "Highest AltitudeChanged altitude, or None.", NULL},
    {"position", get_position, NULL, "Last known PositionChanged (lat, lon), or None.", NULL},
    {"flying_state", get_flying_state, NULL, "Last FlyingStateChanged value, or None.", NULL},
    {NULL},
};

PyTypeObject dw_ArsdkCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.ArsdkCounter",
    .tp_doc = "ArsdkCounter(max_names=64): counts and reads the ARNetworkAL frames of one Parrot "
              "ARSDK link flow.",
    .tp_basicsize = sizeof(ArsdkCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = arsdk_new,
    .tp_init = arsdk_init,
    .tp_dealloc = arsdk_dealloc,
    .tp_members = arsdk_members,
    .tp_getset = arsdk_getset,
};
