/* MavlinkCounter: the frames of a MAVLink link, counted and read as
 * `dronewatch.analyzers.mavlink.MavlinkCounter` (its Python twin) does.
 *
 *   v1: 0xFE len seq sysid compid msgid(1)            payload crc(2)
 *   v2: 0xFD len incompat compat seq sysid compid msgid(3, LE) payload crc(2) [signature(13)]
 *
 * The checksum is CRC-16/MCRF4XX over every byte after the magic, then the message's CRC_EXTRA
 * (given by the caller: the table lives in dronewatch/analyzers/mavlink.py). Facts of the
 * format: see that module's docstring.
 */
#include "_counters.h"

#include <math.h>
#include <string.h>
#include <structmember.h>

#define V1_MAGIC 0xFE
#define V2_MAGIC 0xFD
#define V1_HEADER_LEN 6
#define V2_HEADER_LEN 10
#define CRC_LEN 2
#define SIGNATURE_LEN 13
#define IFLAG_SIGNED 0x01
#define GCS_SYSID 255
#define MSG_HEARTBEAT 0
#define MSG_GLOBAL_POSITION_INT 33
#define MAV_TYPE_GCS 6
#define MAV_AUTOPILOT_INVALID 8
#define MAV_COMP_ID_AUTOPILOT1 1
#define NO_FIX_DEG 1e-3
#define MAX_MSGS 256 /* distinct message ids counted per flow */

typedef struct {
    uint32_t id;
    uint8_t extra;
} Extra;

typedef struct {
    dw_FrameCounter base;
    Py_ssize_t max_ids;
    int16_t low_extras[256]; /* CRC_EXTRA of ids below 256, -1 unknown */
    Extra *high_extras;      /* the others, sorted by id */
    Py_ssize_t nhigh;
    int recognised, signed_, gcs_seen, gcs_side; /* gcs_side: 0 unknown, 1 orig, 2 resp */
    long long frames, crc_errors, unverified, heartbeats;
    uint8_t versions[1]; /* bit set of the versions seen (1, 2) */
    uint8_t sysids[32], compids[32]; /* bit sets */
    Py_ssize_t nsysids, ncompids;
    Py_ssize_t nmsgs;
    uint32_t msg_ids[MAX_MSGS]; /* first-seen order */
    long long msg_counts[MAX_MSGS];
    int has_vehicle, vehicle_rank;
    uint32_t custom_mode;
    uint8_t vtype, autopilot, base_mode, system_status, mavlink_version;
    int has_position;
    uint32_t boot_ms;
    double lat, lon, alt_m, relative_alt_m;
} MavlinkCounter;

static uint16_t crc_x25(const uint8_t *d, Py_ssize_t n, uint16_t crc) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t tmp = d[i] ^ (uint8_t)(crc & 0xFF);
        tmp ^= (uint8_t)(tmp << 4);
        crc = (uint16_t)((crc >> 8) ^ (tmp << 8) ^ (tmp << 3) ^ (tmp >> 4));
    }
    return crc;
}

static int crc_extra(MavlinkCounter *s, uint32_t id) {
    if (id < 256) return s->low_extras[id];
    Py_ssize_t lo = 0, hi = s->nhigh;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (s->high_extras[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return (lo < s->nhigh && s->high_extras[lo].id == id) ? s->high_extras[lo].extra : -1;
}

static void add_id(uint8_t *set, Py_ssize_t *n, Py_ssize_t max, uint8_t v) {
    if (set[v >> 3] & (1 << (v & 7))) return;
    if (*n >= max) return;
    set[v >> 3] |= (uint8_t)(1 << (v & 7));
    (*n)++;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void frame(MavlinkCounter *s, const uint8_t *payload, Py_ssize_t plen, int version,
                  int is_signed, uint8_t sysid, uint8_t compid, uint32_t msgid, int verified,
                  int from_orig) {
    if (!verified) {
        if (!s->recognised) return; /* an unknown id proves nothing until a checksum matched */
        s->unverified++;
    } else {
        s->recognised = 1;
    }
    s->frames++;
    s->versions[0] |= (uint8_t)(1 << version);
    add_id(s->sysids, &s->nsysids, s->max_ids, sysid);
    add_id(s->compids, &s->ncompids, s->max_ids, compid);
    Py_ssize_t k = 0;
    while (k < s->nmsgs && s->msg_ids[k] != msgid) k++;
    if (k < s->nmsgs) {
        s->msg_counts[k]++;
    } else if (s->nmsgs < MAX_MSGS) {
        s->msg_ids[k] = msgid;
        s->msg_counts[k] = 1;
        s->nmsgs++;
    }
    s->signed_ |= is_signed;
    if (!verified) return;
    if (sysid == GCS_SYSID && !s->gcs_side) s->gcs_side = from_orig ? 1 : 2;
    uint8_t p[28] = {0}; /* a v2 sender drops trailing zero bytes: zero-filled here */
    memcpy(p, payload, plen < 28 ? plen : 28);
    if (msgid == MSG_HEARTBEAT) {
        s->heartbeats++;
        int gcs = p[4] == MAV_TYPE_GCS;
        if (gcs) {
            s->gcs_seen = 1;
        } else {
            int rank = (p[5] != MAV_AUTOPILOT_INVALID) * 2 + (compid == MAV_COMP_ID_AUTOPILOT1);
            if (rank >= s->vehicle_rank) {
                s->has_vehicle = 1;
                s->vehicle_rank = rank;
                s->custom_mode = le32(p);
                s->vtype = p[4], s->autopilot = p[5], s->base_mode = p[6];
                s->system_status = p[7], s->mavlink_version = p[8];
            }
        }
        if (!s->gcs_side) s->gcs_side = from_orig == gcs ? 1 : 2;
    } else if (msgid == MSG_GLOBAL_POSITION_INT) {
        double lat = (int32_t)le32(p + 4) / 1e7, lon = (int32_t)le32(p + 8) / 1e7;
        if (fabs(lat) >= NO_FIX_DEG || fabs(lon) >= NO_FIX_DEG) {
            s->has_position = 1;
            s->boot_ms = le32(p);
            s->lat = lat, s->lon = lon;
            s->alt_m = (int32_t)le32(p + 12) / 1000.0;
            s->relative_alt_m = (int32_t)le32(p + 16) / 1000.0;
        }
    }
}

/* Account the frames in d[0:n]; returns the bytes used (the rest is an incomplete frame, kept
 * by a TCP caller for the next segment). `whole`: a datagram, never continued. */
static Py_ssize_t scan(MavlinkCounter *s, const uint8_t *d, Py_ssize_t n, int whole,
                       int from_orig, Py_ssize_t *counted) {
    Py_ssize_t pos = 0;
    int aligned = 1; /* at the start of the data or right after a valid frame */
    while (pos < n) {
        if (d[pos] != V1_MAGIC && d[pos] != V2_MAGIC) {
            while (pos < n && d[pos] != V1_MAGIC && d[pos] != V2_MAGIC) pos++;
            if (pos >= n) return n;
            aligned = 0;
            continue;
        }
        int v1 = d[pos] == V1_MAGIC;
        Py_ssize_t size = -1;
        if (v1 && pos + 2 <= n) size = V1_HEADER_LEN + d[pos + 1] + CRC_LEN;
        if (!v1 && pos + 3 <= n)
            size = V2_HEADER_LEN + d[pos + 1] + CRC_LEN +
                   ((d[pos + 2] & IFLAG_SIGNED) ? SIGNATURE_LEN : 0);
        if (size < 0 || pos + size > n) {
            if (!whole) return pos; /* wait for the segments that complete it */
            pos++;
            aligned = 0;
            continue;
        }
        const uint8_t *f = d + pos;
        Py_ssize_t header_len = v1 ? V1_HEADER_LEN : V2_HEADER_LEN;
        if (!v1 && (f[2] & ~IFLAG_SIGNED)) { /* unknown incompatibility flags */
            pos++;
            aligned = 0;
            continue;
        }
        uint8_t sysid = v1 ? f[3] : f[5], compid = v1 ? f[4] : f[6];
        uint32_t msgid = v1 ? f[5] : (uint32_t)f[7] | (uint32_t)f[8] << 8 | (uint32_t)f[9] << 16;
        Py_ssize_t body = header_len + f[1];
        int extra = crc_extra(s, msgid);
        if (extra >= 0) {
            uint16_t crc = crc_x25(f + 1, body - 1, 0xFFFF);
            uint8_t e = (uint8_t)extra;
            crc = crc_x25(&e, 1, crc);
            if (crc != (uint16_t)(f[body] | f[body + 1] << 8)) {
                if (aligned) s->crc_errors++;
                pos++;
                aligned = 0;
                continue;
            }
        }
        long long before = s->frames;
        frame(s, f + header_len, f[1], v1 ? 1 : 2, !v1 && (f[2] & IFLAG_SIGNED), sysid, compid,
              msgid, extra >= 0, from_orig);
        *counted += s->frames - before;
        pos += size;
        aligned = 1;
    }
    return pos;
}

static Py_ssize_t mavlink_feed(dw_FrameCounter *self, const uint8_t *d, Py_ssize_t n,
                               int from_orig) { /* a datagram: whole frames only */
    Py_ssize_t counted = 0;
    scan((MavlinkCounter *)self, d, n, 1, from_orig, &counted);
    return counted;
}

static PyObject *mavlink_scan(PyObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "whole", "from_orig", NULL};
    Py_buffer data;
    int whole, from_orig = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*p|p", kwlist, &data, &whole, &from_orig))
        return NULL;
    Py_ssize_t counted = 0;
    Py_ssize_t used = scan((MavlinkCounter *)self, data.buf, data.len, whole, from_orig, &counted);
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(used);
}

static PyObject *mavlink_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    MavlinkCounter *s = (MavlinkCounter *)PyType_GenericNew(type, args, kwds); /* zeroed */
    if (s == NULL) return NULL;
    s->base.feed = mavlink_feed;
    memset(s->low_extras, 0xFF, sizeof s->low_extras); /* no id known until __init__ */
    s->vehicle_rank = -1;
    return (PyObject *)s;
}

static int cmp_extra(const void *a, const void *b) {
    uint32_t x = ((const Extra *)a)->id, y = ((const Extra *)b)->id;
    return x < y ? -1 : x > y;
}

static int mavlink_init(PyObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"crc_extras", "max_ids", NULL};
    MavlinkCounter *s = (MavlinkCounter *)self;
    PyObject *extras;
    Py_ssize_t max_ids = 32;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|n", kwlist, &PyDict_Type, &extras, &max_ids))
        return -1;
    if (max_ids < 0) {
        PyErr_SetString(PyExc_ValueError, "MavlinkCounter: max_ids must be 0 or more");
        return -1;
    }
    Extra *high = PyMem_Calloc(PyDict_GET_SIZE(extras) + 1, sizeof(Extra));
    if (high == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int16_t low[256];
    memset(low, 0xFF, sizeof low);
    Py_ssize_t nhigh = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(extras, &i, &key, &value)) {
        unsigned long id = PyLong_AsUnsignedLong(key);
        long extra = PyLong_AsLong(value);
        if (PyErr_Occurred() || id >= 1u << 24 || extra < 0 || extra > 255) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError,
                            "MavlinkCounter: crc_extras maps message ids (24 bits) to bytes");
            PyMem_Free(high);
            return -1;
        }
        if (id < 256) low[id] = (int16_t)extra;
        else high[nhigh++] = (Extra){(uint32_t)id, (uint8_t)extra};
    }
    qsort(high, (size_t)nhigh, sizeof(Extra), cmp_extra);
    PyMem_Free(s->high_extras);
    s->high_extras = high;
    s->nhigh = nhigh;
    memcpy(s->low_extras, low, sizeof low);
    s->max_ids = max_ids;
    return 0;
}

static void mavlink_dealloc(PyObject *self) {
    PyMem_Free(((MavlinkCounter *)self)->high_extras);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *get_sysids(PyObject *self, void *c) {
    return dw_bit_set(((MavlinkCounter *)self)->sysids, 256);
}

static PyObject *get_compids(PyObject *self, void *c) {
    return dw_bit_set(((MavlinkCounter *)self)->compids, 256);
}

static PyObject *get_versions(PyObject *self, void *c) {
    return dw_bit_set(((MavlinkCounter *)self)->versions, 8);
}

static PyObject *get_msgs(PyObject *self, void *c) {
    MavlinkCounter *s = (MavlinkCounter *)self;
    PyObject *out = PyDict_New();
    for (Py_ssize_t i = 0; out != NULL && i < s->nmsgs; i++) {
        if (dw_dict_count(out, PyLong_FromUnsignedLong(s->msg_ids[i]), s->msg_counts[i]) < 0)
            Py_CLEAR(out);
    }
    return out;
}

static PyObject *get_vehicle(PyObject *self, void *c) {
    MavlinkCounter *s = (MavlinkCounter *)self;
    if (!s->has_vehicle) Py_RETURN_NONE;
    return Py_BuildValue("(kiiiii)", (unsigned long)s->custom_mode, s->vtype, s->autopilot,
                         s->base_mode, s->system_status, s->mavlink_version);
}

static PyObject *get_position(PyObject *self, void *c) {
    MavlinkCounter *s = (MavlinkCounter *)self;
    if (!s->has_position) Py_RETURN_NONE;
    return Py_BuildValue("(kdddd)", (unsigned long)s->boot_ms, s->lat, s->lon, s->alt_m,
                         s->relative_alt_m);
}

static PyObject *get_gcs_side(PyObject *self, void *c) {
    int side = ((MavlinkCounter *)self)->gcs_side;
    if (!side) Py_RETURN_NONE;
    return PyUnicode_FromString(side == 1 ? "orig" : "resp");
}

static PyObject *get_flag(PyObject *self, void *c) {
    MavlinkCounter *s = (MavlinkCounter *)self;
    int which = (int)(intptr_t)c;
    return PyBool_FromLong(which == 0 ? s->recognised : which == 1 ? s->signed_ : s->gcs_seen);
}

static PyMethodDef mavlink_methods[] = {
    {"scan", (PyCFunction)(void (*)(void))mavlink_scan, METH_VARARGS | METH_KEYWORDS,
     "scan(data, whole, from_orig=True) -> bytes used: account the frames of a datagram (whole) "
     "or of a TCP stream buffer, whose incomplete last frame is left unused"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef mavlink_members[] = {
    {"max_ids", T_PYSSIZET, offsetof(MavlinkCounter, max_ids), READONLY, NULL},
    {"frames", T_LONGLONG, offsetof(MavlinkCounter, frames), READONLY,
     "Checksum-valid frames plus, once recognised, frames of unknown ids."},
    {"crc_errors", T_LONGLONG, offsetof(MavlinkCounter, crc_errors), READONLY, NULL},
    {"unverified", T_LONGLONG, offsetof(MavlinkCounter, unverified), READONLY, NULL},
    {"heartbeats", T_LONGLONG, offsetof(MavlinkCounter, heartbeats), READONLY, NULL},
    {NULL},
};

static PyGetSetDef mavlink_getset[] = {
    {"recognised", get_flag, NULL, "A frame passed its checksum.", (void *)0},
    {"signed", get_flag, NULL, "A MAVLink 2 frame carried a signature.", (void *)1},
    {"gcs_seen", get_flag, NULL, "A ground station's HEARTBEAT was seen.", (void *)2},
    {"versions", get_versions, NULL, "MAVLink versions seen.", NULL},
    {"sysids", get_sysids, NULL, "System ids seen (max_ids of them).", NULL},
    {"compids", get_compids, NULL, "Component ids seen (max_ids of them).", NULL},
    {"msgs", get_msgs, NULL, "Frames per message id, the first 256 distinct ids.", NULL},
    {"vehicle", get_vehicle, NULL,
     "The vehicle's HEARTBEAT (custom_mode, type, autopilot, base_mode, system_status, "
     "mavlink_version), or None.", NULL},
    {"position", get_position, NULL,
     "Last GLOBAL_POSITION_INT with a fix (time_boot_ms, lat, lon, alt_m, relative_alt_m), or "
     "None.", NULL},
    {"gcs_side", get_gcs_side, NULL,
     "Which end the content says is the ground station: 'orig', 'resp' or None.", NULL},
    {NULL},
};

PyTypeObject dw_MavlinkCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.MavlinkCounter",
    .tp_doc = "MavlinkCounter(crc_extras, max_ids=32): counts and reads the MAVLink frames of "
              "one flow; crc_extras maps message ids to their CRC_EXTRA byte.",
    .tp_basicsize = sizeof(MavlinkCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = mavlink_new,
    .tp_init = mavlink_init,
    .tp_dealloc = mavlink_dealloc,
    .tp_methods = mavlink_methods,
    .tp_members = mavlink_members,
    .tp_getset = mavlink_getset,
};
