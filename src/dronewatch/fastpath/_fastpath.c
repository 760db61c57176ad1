/* The bulk path's inner loops in C: the pcap record walk and the per-row flow-table walk.
 *
 * `record_fields` reads the record headers of a classic pcap file that lie whole in a read buffer
 * into columns (where each frame starts, its lengths, its time).
 * `walk` goes over the rows of a `PcapBatch` in capture order, reads the link, IP and transport
 * headers of each one, and adds the packets of settled flows to per-flow counters kept here;
 * every other row goes back to Python (`handle`, `follow`, `sweep`) in order, after the counters
 * kept here have been written to their `Flow` objects, so Python code always sees exact counts.
 * An empty TCP segment of a known flow that only adds a history letter is taken here too, and its
 * letter written as `Engine._tcp` writes it (a reset or a closing FIN goes to Python).
 * A datagram of a drone link whose followers all keep their state in frame counters
 * (`_counters.h`) is fed to those counters here, without a call into Python.
 * Without this extension every packet goes the per-packet path; the tests compare the two on
 * every capture.
 * Facts only: what is parsed here is fixed by the formats, what to count is decided by the
 * `Flow` state the engine keeps.
 */
#include "_counters.h"

#include <string.h>

#define KEY_LEN 38 /* version, protocol, lower end (16-byte address, port), higher end */
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
/* The Zeek history letters (`Engine._tcp`), originator's upper case first, as bits of the set a
 * flow already has. */
static const char LETTERS[] = "SsHhAaDdFfRr";
#define LETTER_BIT(c) ((uint16_t)(1u << (strchr(LETTERS, (c)) - LETTERS)))
#define HAS_D LETTER_BIT('D')
#define HAS_d LETTER_BIT('d')
#define HAS_A LETTER_BIT('A')
#define HAS_a LETTER_BIT('a')
#define HAS_F LETTER_BIT('F')
#define HAS_f LETTER_BIT('f')

static PyObject *s_first_ts, *s_last_ts, *s_inspected, *s_inspectors, *s_followers, *s_history,
    *s_counters, *s_inspector_names,
    *s_orig_h, *s_orig_p, *s_orig_pkts, *s_resp_pkts, *s_orig_bytes, *s_resp_bytes,
    *s_orig_payload_bytes, *s_resp_payload_bytes;

/* ---- record offsets ------------------------------------------------------------------------ */

static inline uint32_t rd32(const uint8_t *p, int big) {
    return big ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
               : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

/* One column of a batch: `room` int64 or double values, as a bytes object written in place. */
static PyObject *column(Py_ssize_t room) {
    return PyBytes_FromStringAndSize(NULL, room * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *record_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos;
    unsigned long long limit;
    int big, nano;
    if (!PyArg_ParseTuple(args, "y*nKpp", &buf, &pos, &limit, &big, &nano)) return NULL;
    const uint8_t *b = buf.buf;
    Py_ssize_t end = buf.len;
    Py_ssize_t room = end > pos ? (end - pos) / 16 + 1 : 1;
    PyObject *at_o = column(room), *cap_o = column(room), *wire_o = column(room);
    PyObject *ts_o = column(room);
    PyObject *result = NULL;
    if (at_o == NULL || cap_o == NULL || wire_o == NULL || ts_o == NULL) goto done;
    int64_t *at = (int64_t *)PyBytes_AS_STRING(at_o), *cap = (int64_t *)PyBytes_AS_STRING(cap_o);
    int64_t *wire = (int64_t *)PyBytes_AS_STRING(wire_o);
    double *ts = (double *)PyBytes_AS_STRING(ts_o);
    const double scale = nano ? 1e-9 : 1e-6;
    long long wire_total = 0, truncated = 0;
    Py_ssize_t n = 0;
    while (pos >= 0 && pos + 16 <= end) {
        const uint8_t *h = b + pos;
        uint32_t incl = rd32(h + 8, big), orig = rd32(h + 12, big);
        if ((unsigned long long)incl > limit || (Py_ssize_t)incl > end - pos - 16) break;
        /* `sec + frac * scale` as the per-packet reader computes it: the product rounded to a
         * double before the sum (volatile: no fused multiply-add may skip that rounding). */
        volatile double part = (double)rd32(h + 4, big) * scale;
        ts[n] = (double)rd32(h, big) + part;
        at[n] = pos + 16;
        cap[n] = incl;
        wire[n] = orig;
        wire_total += orig;
        truncated += incl < orig;
        n++;
        pos += 16 + (Py_ssize_t)incl;
    }
    Py_ssize_t size = n * (Py_ssize_t)sizeof(int64_t);
    if (_PyBytes_Resize(&at_o, size) < 0 || _PyBytes_Resize(&cap_o, size) < 0 ||
        _PyBytes_Resize(&wire_o, size) < 0 || _PyBytes_Resize(&ts_o, size) < 0)
        goto done;
    result = Py_BuildValue("OOOOLLn", at_o, cap_o, wire_o, ts_o, wire_total, truncated, pos);
done:
    Py_XDECREF(at_o);
    Py_XDECREF(cap_o);
    Py_XDECREF(wire_o);
    Py_XDECREF(ts_o);
    PyBuffer_Release(&buf);
    return result;
}

/* ---- the flow-table walk ------------------------------------------------------------------- */

typedef struct {
    uint8_t key[KEY_LEN];
    uint8_t used, checked, orig_low, inspectors, followers;
    uint16_t letters; /* the history letters the flow has (`LETTERS`) */
    uint8_t native_inspect; /* the inspectors are the followers, and `counters` is set */
    PyObject *counters; /* the followers' frame counters (strong), when every follower has one */
    uint64_t hash;
    long long epoch; /* the walk's `soft` count when the state was read */
    PyObject *flow; /* strong reference; NULL while the engine has no flow for the key */
    double first_ts, last_ts;
    long long inspected; /* the flow's, plus the payload packets counted here since */
    long long o_pkts, r_pkts, o_bytes, r_bytes, o_plen, r_plen, new_inspected;
    int dirty;
} Entry;

typedef struct {
    Entry *slots;
    size_t cap, used;
    Entry **dirty;
    size_t ndirty;
    long long counted; /* rows counted here, reported at the end of the walk */
    double latest;
    long long limit;
    double active_s;
    PyObject *lookup, *counted_cb;
} Table;

static int table_init(Table *t, size_t cap) {
    t->slots = PyMem_Calloc(cap, sizeof(Entry));
    t->dirty = PyMem_Malloc(cap * sizeof(Entry *));
    if (t->slots == NULL || t->dirty == NULL) {
        PyMem_Free(t->slots);
        PyMem_Free(t->dirty);
        PyErr_NoMemory();
        return -1;
    }
    t->cap = cap;
    t->used = 0;
    t->ndirty = 0;
    return 0;
}

static void table_clear(Table *t) {
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].used) {
            Py_CLEAR(t->slots[i].flow);
            Py_CLEAR(t->slots[i].counters);
        }
    }
    memset(t->slots, 0, t->cap * sizeof(Entry));
    t->used = 0;
    t->ndirty = 0;
}

static void table_free(Table *t) {
    if (t->slots == NULL) return;
    table_clear(t);
    PyMem_Free(t->slots);
    PyMem_Free(t->dirty);
    t->slots = NULL;
}

static uint64_t key_hash(const uint8_t *k) {
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < KEY_LEN; i++) {
        h ^= k[i];
        h *= 0x100000001B3ULL;
    }
    return h ^ (h >> 29);
}

/* Add `delta` to the int attribute `name` of `obj`. */
static int add_attr(PyObject *obj, PyObject *name, long long delta) {
    if (delta == 0) return 0;
    PyObject *cur = PyObject_GetAttr(obj, name);
    if (cur == NULL) return -1;
    PyObject *d = PyLong_FromLongLong(delta);
    if (d == NULL) {
        Py_DECREF(cur);
        return -1;
    }
    PyObject *sum = PyNumber_Add(cur, d);
    Py_DECREF(cur);
    Py_DECREF(d);
    if (sum == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, sum);
    Py_DECREF(sum);
    return rc;
}

/* Write what was counted here to the flows. */
static int flush(Table *t) {
    for (size_t i = 0; i < t->ndirty; i++) {
        Entry *e = t->dirty[i];
        PyObject *f = e->flow;
        e->dirty = 0;
        if (add_attr(f, s_orig_pkts, e->o_pkts) < 0 || add_attr(f, s_resp_pkts, e->r_pkts) < 0 ||
            add_attr(f, s_orig_bytes, e->o_bytes) < 0 ||
            add_attr(f, s_resp_bytes, e->r_bytes) < 0 ||
            add_attr(f, s_orig_payload_bytes, e->o_plen) < 0 ||
            add_attr(f, s_resp_payload_bytes, e->r_plen) < 0 ||
            add_attr(f, s_inspected, e->new_inspected) < 0)
            return -1;
        e->o_pkts = e->r_pkts = e->o_bytes = e->r_bytes = e->o_plen = e->r_plen = 0;
        e->new_inspected = 0;
        PyObject *last = PyObject_GetAttr(f, s_last_ts);
        if (last == NULL) return -1;
        double was = PyFloat_AsDouble(last);
        Py_DECREF(last);
        if (was == -1.0 && PyErr_Occurred()) return -1;
        if (e->last_ts > was) {
            PyObject *v = PyFloat_FromDouble(e->last_ts);
            if (v == NULL) return -1;
            int rc = PyObject_SetAttr(f, s_last_ts, v);
            Py_DECREF(v);
            if (rc < 0) return -1;
        }
    }
    t->ndirty = 0;
    return 0;
}

/* Tell the engine how many packets were counted here (once, at the end of the walk: only the
 * totals read it). */
static int report(Table *t) {
    if (!t->counted) return 0;
    PyObject *r = PyObject_CallFunction(t->counted_cb, "Ld", t->counted, t->latest);
    t->counted = 0;
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int table_grow(Table *t) {
    if (flush(t) < 0) return -1;
    Entry *old = t->slots;
    size_t old_cap = t->cap;
    PyMem_Free(t->dirty);
    if (table_init(t, old_cap * 2) < 0) {
        t->slots = old; /* keep the old table so it is freed with its references */
        t->cap = old_cap;
        t->dirty = PyMem_Malloc(old_cap * sizeof(Entry *));
        return -1;
    }
    for (size_t i = 0; i < old_cap; i++) {
        if (!old[i].used) continue;
        size_t j = old[i].hash & (t->cap - 1);
        while (t->slots[j].used) j = (j + 1) & (t->cap - 1);
        t->slots[j] = old[i];
        t->used++;
    }
    PyMem_Free(old);
    return 0;
}

static Entry *table_get(Table *t, const uint8_t *key) {
    if ((t->used + 1) * 2 > t->cap && table_grow(t) < 0) return NULL;
    uint64_t h = key_hash(key);
    size_t j = h & (t->cap - 1);
    while (t->slots[j].used) {
        if (t->slots[j].hash == h && memcmp(t->slots[j].key, key, KEY_LEN) == 0)
            return &t->slots[j];
        j = (j + 1) & (t->cap - 1);
    }
    Entry *e = &t->slots[j];
    e->used = 1;
    e->hash = h;
    memcpy(e->key, key, KEY_LEN);
    t->used++;
    return e;
}

static int read_double(PyObject *obj, PyObject *name, double *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    *out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return (*out == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static int read_len(PyObject *obj, PyObject *name) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    int truth = PyObject_IsTrue(v);
    Py_DECREF(v);
    return truth;
}

/* The followers' frame counters, kept when every follower of the flow has one (the walk then
 * feeds them itself), and whether the flow's inspectors are exactly its followers (so a packet
 * still inspected goes to the same hooks, which feed the same counters). */
static int read_counters(PyObject *f, Entry *e) {
    Py_CLEAR(e->counters);
    e->native_inspect = 0;
    if (!e->followers) return 0;
    PyObject *fols = PyObject_GetAttr(f, s_followers), *ctrs = NULL, *names = NULL;
    int rc = -1, native = 0;
    if (fols == NULL || (ctrs = PyObject_GetAttr(f, s_counters)) == NULL) goto out;
    if (PyTuple_Check(fols) && PyTuple_Check(ctrs) &&
        PyTuple_GET_SIZE(ctrs) == PyTuple_GET_SIZE(fols)) {
        native = 1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ctrs); i++)
            native &= PyObject_TypeCheck(PyTuple_GET_ITEM(ctrs, i), &dw_FrameCounterType);
    }
    if (native) {
        if ((names = PyObject_GetAttr(f, s_inspector_names)) == NULL) goto out;
        int same = PyObject_RichCompareBool(names, fols, Py_EQ);
        if (same < 0) goto out;
        e->native_inspect = (uint8_t)same;
        Py_INCREF(ctrs);
        e->counters = ctrs;
    }
    rc = 0;
out:
    Py_XDECREF(fols);
    Py_XDECREF(ctrs);
    Py_XDECREF(names);
    return rc;
}

/* Read the state of an entry's flow (looking the flow up when the entry has none): 1 with a
 * flow, 0 without, -1 on error. */
static int check(Table *t, Entry *e) {
    if (e->flow == NULL) {
        PyObject *k = PyBytes_FromStringAndSize((const char *)e->key, KEY_LEN);
        if (k == NULL) return -1;
        PyObject *f = PyObject_CallOneArg(t->lookup, k);
        Py_DECREF(k);
        if (f == NULL) return -1;
        if (f == Py_None) {
            Py_DECREF(f);
            return 0;
        }
        e->flow = f;
        /* Is the originator the key's lower end? */
        PyObject *oh = PyObject_GetAttr(f, s_orig_h), *op = PyObject_GetAttr(f, s_orig_p);
        if (oh == NULL || op == NULL) {
            Py_XDECREF(oh);
            Py_XDECREF(op);
            return -1;
        }
        long port = PyLong_AsLong(op);
        Py_ssize_t size = e->key[0] == 4 ? 4 : 16;
        e->orig_low = PyBytes_Check(oh) && PyBytes_GET_SIZE(oh) == size &&
                      memcmp(PyBytes_AS_STRING(oh), e->key + 2, size) == 0 &&
                      port == (e->key[18] << 8 | e->key[19]);
        Py_DECREF(oh);
        Py_DECREF(op);
        if (PyErr_Occurred()) return -1;
    }
    PyObject *f = e->flow;
    int ins = read_len(f, s_inspectors), fol = read_len(f, s_followers);
    if (ins < 0 || fol < 0 || read_double(f, s_first_ts, &e->first_ts) < 0) return -1;
    e->inspectors = (uint8_t)ins;
    e->followers = (uint8_t)fol;
    if (read_counters(f, e) < 0) return -1;
    PyObject *v = PyObject_GetAttr(f, s_inspected);
    if (v == NULL) return -1;
    e->inspected = PyLong_AsLongLong(v) + e->new_inspected;
    Py_DECREF(v);
    if (PyErr_Occurred()) return -1;
    PyObject *hist = PyObject_GetAttr(f, s_history);
    if (hist == NULL) return -1;
    uint16_t letters = 0;
    if (PyUnicode_Check(hist)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(hist);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ_CHAR(hist, i);
            const char *at = c < 128 && c ? strchr(LETTERS, (int)c) : NULL;
            if (at != NULL) letters |= (uint16_t)(1u << (at - LETTERS));
        }
    }
    Py_DECREF(hist);
    e->letters = letters;
    e->checked = 1;
    return 1;
}

/* The state Python reports after each call back: next sweep time, flows ended so far. */
typedef struct {
    double next_sweep;
    long long ended;
} Engine;

/* Read `(next_sweep, ended[, touched])` from a call back's result; a change in `ended` drops
 * every reference to a flow (ended flows must not be counted). `touched` (if given): whether the
 * call reached a flow at all (False for a frame that is not IP). */
static int after_call(Table *t, Engine *eng, PyObject *r, int *touched) {
    if (r == NULL) return -1;
    double next_sweep;
    long long ended;
    int reached = 1;
    int ok = PyArg_ParseTuple(r, "dL|p", &next_sweep, &ended, &reached);
    Py_DECREF(r);
    if (!ok) return -1;
    if (touched != NULL) *touched = reached;
    eng->next_sweep = next_sweep;
    if (ended != eng->ended) {
        eng->ended = ended;
        table_clear(t);
    }
    return 0;
}

typedef struct {
    int ok;        /* read here */
    int tcp, control, same, low, letter, has_payload, flags;
    uint8_t key[KEY_LEN];
    long long ip_len, payload_len, payload_at, payload_stop;
} Row;

/* The headers of one frame, by the same rules as the per-packet decoder
   (`dronewatch.capture.decode.Decoder`). */
static void parse(const uint8_t *fr, long long cap, int l3, Row *r) {
    r->ok = 0;
    if (cap < l3 + 1) return;
    int version = fr[l3] >> 4;
    int v4 = version == 4, v6 = version == 6;
    if (l3) {
        if (cap < 14) return;
        int etype = fr[12] << 8 | fr[13];
        v4 &= etype == 0x0800;
        v6 &= etype == 0x86DD;
    }
    if (!v4 && !v6) return;
    long long ihl = v4 ? (fr[l3] & 0x0F) * 4 : 40;
    if (cap < l3 + (v4 ? 20 : 40)) return;
    int proto = v4 ? fr[l3 + 9] : fr[l3 + 6];
    if (v4 && (ihl < 20 || (((fr[l3 + 6] & 0x1F) << 8) | fr[l3 + 7]) != 0)) return;
    int tcp = proto == 6;
    if (!tcp && proto != 17) return;
    long long l4 = l3 + ihl;
    if (cap < l4 + (tcp ? 14 : 6)) return;
    const uint8_t *t = fr + l4;
    int sport = t[0] << 8 | t[1], dport = t[2] << 8 | t[3];
    int flags = tcp ? t[13] : 0;
    if (v4) {
        long long total = fr[l3 + 2] << 8 | fr[l3 + 3];
        r->ip_len = total >= ihl ? total : cap - l3;
    } else {
        r->ip_len = (long long)(fr[l3 + 4] << 8 | fr[l3 + 5]) + 40;
    }
    long long start = l4 + (tcp ? (t[12] >> 4) * 4 : 8);
    long long end = l3 + r->ip_len;
    if (end < start) end = start;
    r->payload_len = end - start;
    r->payload_at = start;
    long long stop = end < cap ? end : cap;
    r->has_payload = stop > start;
    r->payload_stop = stop > start ? stop : start;
    uint8_t src[18] = {0}, dst[18] = {0};
    memcpy(src, fr + l3 + (v4 ? 12 : 8), v4 ? 4 : 16);
    memcpy(dst, fr + l3 + (v4 ? 16 : 24), v4 ? 4 : 16);
    src[16] = sport >> 8, src[17] = sport & 0xFF;
    dst[16] = dport >> 8, dst[17] = dport & 0xFF;
    int cmp = memcmp(src, dst, 18);
    r->same = cmp == 0;
    r->low = cmp <= 0;
    r->key[0] = (uint8_t)version;
    r->key[1] = (uint8_t)proto;
    memcpy(r->key + 2, r->low ? src : dst, 18);
    memcpy(r->key + 20, r->low ? dst : src, 18);
    r->tcp = tcp;
    r->flags = flags;
    r->control = tcp && (flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0;
    r->letter = tcp ? (r->payload_len > 0 ? 1 : ((flags & TCP_ACK) ? 2 : 0)) : 0;
    r->ok = 1;
}

/* The history letter an empty TCP segment adds, as `Engine._tcp` picks it (RST aside: the walk
 * hands those to Python), or 0 for none. */
static char empty_segment_letter(int flags, int from_orig) {
    if (flags & TCP_SYN) return (flags & TCP_ACK) ? (from_orig ? 'H' : 'h') : (from_orig ? 'S' : 's');
    if (flags & TCP_FIN) return from_orig ? 'F' : 'f';
    if (flags & TCP_ACK) return from_orig ? 'A' : 'a';
    return 0;
}

/* `flow.history = sys.intern(flow.history + letter)`, as the engine writes a new letter. */
static int add_letter(Entry *e, char letter) {
    PyObject *hist = PyObject_GetAttr(e->flow, s_history);
    if (hist == NULL) return -1;
    PyObject *one = PyUnicode_FromStringAndSize(&letter, 1);
    PyObject *longer = one != NULL ? PyUnicode_Concat(hist, one) : NULL;
    Py_DECREF(hist);
    Py_XDECREF(one);
    if (longer == NULL) return -1;
    PyUnicode_InternInPlace(&longer);
    int rc = PyObject_SetAttr(e->flow, s_history, longer);
    Py_DECREF(longer);
    if (rc == 0) e->letters |= LETTER_BIT(letter);
    return rc;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer buf, at_b, cap_b, ts_b;
    int l3;
    Engine eng = {0};
    Table t = {0};
    PyObject *handle, *follow, *sweep;
    if (!PyArg_ParseTuple(args, "y*y*y*y*idLLdOOOOO", &buf, &at_b, &cap_b, &ts_b, &l3,
                          &eng.next_sweep, &eng.ended, &t.limit, &t.active_s, &t.lookup, &handle,
                          &follow, &sweep, &t.counted_cb))
        return NULL;
    PyObject *result = NULL;
    const uint8_t *b = buf.buf;
    const int64_t *at = at_b.buf, *caps = cap_b.buf;
    const double *ts = ts_b.buf;
    Py_ssize_t n = at_b.len / (Py_ssize_t)sizeof(int64_t);
    if (cap_b.len != at_b.len || ts_b.len != at_b.len) {
        PyErr_SetString(PyExc_ValueError, "walk: arrays of different lengths");
        goto done;
    }
    if (table_init(&t, 1024) < 0) goto done;
    long long soft = 0; /* bumped when Python may have touched a flow not known here: re-read all */
    Row r;
    for (Py_ssize_t i = 0; i < n; i++) {
        double now = ts[i];
        long long cap = caps[i];
        if (at[i] < 0 || cap < 0 || at[i] + cap > buf.len) {
            PyErr_SetString(PyExc_ValueError, "walk: a frame lies outside the buffer");
            goto done;
        }
        parse(b + at[i], cap, l3, &r);
        if (!r.ok) { /* the per-packet decoder's; an IP packet of it may touch any flow */
            int touched;
            if (flush(&t) < 0 ||
                after_call(&t, &eng, PyObject_CallFunction(handle, "n", i), &touched) < 0)
                goto done;
            if (touched) soft++;
            continue;
        }
        if (now >= eng.next_sweep) {
            if (flush(&t) < 0 || after_call(&t, &eng, PyObject_CallFunction(sweep, "d", now), NULL) < 0)
                goto done;
        }
        Entry *e = NULL;
        /* An empty segment of a known flow (SYN-ACK, first ACK, FIN) only adds to its counters
         * and history, done here; a reset, or a FIN that closes the flow, goes to the engine,
         * which notes the close. */
        int empty_tcp = r.tcp && r.payload_len == 0 && !(r.flags & TCP_RST);
        int go_python = (r.control && !empty_tcp) || r.same;
        if (!go_python) {
            e = table_get(&t, r.key);
            if (e == NULL) goto done;
            int got = (e->checked && e->epoch == soft) ? 1 : check(&t, e);
            e->epoch = soft;
            if (got < 0) goto done;
            go_python = got == 0 || now - e->first_ts > t.active_s;
        }
        int from_orig = 0, to_follow = 0, to_count = 0;
        char letter = 0;
        if (!go_python) {
            from_orig = r.low == e->orig_low;
            if (empty_tcp) {
                char c = empty_segment_letter(r.flags, from_orig);
                uint16_t after = e->letters | (c ? LETTER_BIT(c) : 0);
                if (c && !(e->letters & LETTER_BIT(c))) letter = c;
                if ((r.flags & TCP_FIN) && (after & HAS_F) && (after & HAS_f)) go_python = 1;
            } else if (r.letter) {
                int bit = r.letter == 1 ? (from_orig ? HAS_D : HAS_d) : (from_orig ? HAS_A : HAS_a);
                go_python = !(e->letters & bit);
            }
        }
        if (!go_python && r.has_payload) {
            if (e->inspected < t.limit) {
                if (e->inspectors) {
                    if (e->native_inspect && !r.tcp) to_count = 1;
                    else go_python = 1;
                }
            } else if (e->followers) {
                if (r.tcp) go_python = 1;
                else if (e->counters != NULL) to_count = 1;
                else to_follow = 1;
            }
        }
        if (go_python) {
            if (flush(&t) < 0 ||
                after_call(&t, &eng, PyObject_CallFunction(handle, "n", i), NULL) < 0)
                goto done;
            if (e != NULL) e->checked = 0; /* the flow may have changed */
            continue;
        }
        /* Count the row. */
        if (letter && add_letter(e, letter) < 0) goto done;
        if (from_orig) {
            e->o_pkts++;
            e->o_bytes += r.ip_len;
            e->o_plen += r.payload_len;
        } else {
            e->r_pkts++;
            e->r_bytes += r.ip_len;
            e->r_plen += r.payload_len;
        }
        if (r.has_payload && e->inspected < t.limit) {
            e->inspected++;
            e->new_inspected++;
        }
        if (!e->dirty) {
            e->dirty = 1;
            e->last_ts = now;
            t.dirty[t.ndirty++] = e;
        } else if (now > e->last_ts) {
            e->last_ts = now;
        }
        if (t.counted == 0 || now > t.latest) t.latest = now;
        t.counted++;
        if (to_count) { /* what the followers' packet hooks would do, done here */
            const uint8_t *payload = b + at[i] + r.payload_at;
            Py_ssize_t len = (Py_ssize_t)(r.payload_stop - r.payload_at);
            for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(e->counters); k++) {
                dw_FrameCounter *c = (dw_FrameCounter *)PyTuple_GET_ITEM(e->counters, k);
                c->feed(c, payload, len, from_orig);
            }
        }
        if (to_follow) {
            PyObject *flow = e->flow;
            Py_INCREF(flow);
            if (flush(&t) < 0) {
                Py_DECREF(flow);
                goto done;
            }
            PyObject *res = PyObject_CallFunction(follow, "nOiLLLL", i, flow, from_orig, r.ip_len,
                                                  r.payload_at, r.payload_stop, r.payload_len);
            Py_DECREF(flow);
            if (after_call(&t, &eng, res, NULL) < 0) goto done;
            e->checked = 0; /* a follower may have declined */
        }
        if ((i & 0xFFFF) == 0 && PyErr_CheckSignals() < 0) goto done;
    }
    if (flush(&t) < 0 || report(&t) < 0) goto done;
    result = PyFloat_FromDouble(eng.next_sweep);
done:
    if (result == NULL && t.slots != NULL) {
        /* Keep what was counted: an exception must not lose packets already taken. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (flush(&t) < 0 || report(&t) < 0) PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    table_free(&t);
    PyBuffer_Release(&buf);
    PyBuffer_Release(&at_b);
    PyBuffer_Release(&cap_b);
    PyBuffer_Release(&ts_b);
    return result;
}

static PyMethodDef methods[] = {
    {"record_fields", record_fields, METH_VARARGS,
     "record_fields(buf, pos, limit, big_endian, nano) -> (data_at, caplen, wirelen, ts, "
     "wire_bytes, truncated, next position)\n\n"
     "The pcap records that lie whole in buf from pos on, as columns (bytes of int64, and of "
     "double for ts); stops at the first record cut by the buffer's end or longer than limit."},
    {"walk", walk, METH_VARARGS,
     "walk(buf, data_at, caplen, ts, l3, next_sweep, ended, limit, active_s, lookup, handle, "
     "follow, sweep, counted) -> next sweep time\n\n"
     "Walk the rows of a batch in order, counting the packets of settled flows here and handing "
     "every other row to the call backs (see dronewatch.fastpath.bulk)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The bulk path's inner loops in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
#define INTERN(var, text)                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(s_first_ts, "first_ts");
    INTERN(s_last_ts, "last_ts");
    INTERN(s_inspected, "inspected");
    INTERN(s_inspectors, "inspectors");
    INTERN(s_followers, "followers");
    INTERN(s_history, "history");
    INTERN(s_counters, "counters");
    INTERN(s_inspector_names, "inspector_names");
    INTERN(s_orig_h, "orig_h");
    INTERN(s_orig_p, "orig_p");
    INTERN(s_orig_pkts, "orig_pkts");
    INTERN(s_resp_pkts, "resp_pkts");
    INTERN(s_orig_bytes, "orig_bytes");
    INTERN(s_resp_bytes, "resp_bytes");
    INTERN(s_orig_payload_bytes, "orig_payload_bytes");
    INTERN(s_resp_payload_bytes, "resp_payload_bytes");
#undef INTERN
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (dw_add_counters(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* The Flow attributes read or written above by name; dronewatch.fastpath checks at import
       that Flow still has each of them. */
    PyObject *fields = PyTuple_Pack(
        16, s_first_ts, s_last_ts, s_inspected, s_inspectors, s_followers, s_history, s_counters,
        s_inspector_names, s_orig_h, s_orig_p, s_orig_pkts, s_resp_pkts, s_orig_bytes,
        s_resp_bytes, s_orig_payload_bytes, s_resp_payload_bytes);
    if (fields == NULL || PyModule_AddObject(m, "FLOW_FIELDS", fields) < 0) {
        Py_XDECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
