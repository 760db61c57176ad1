/* One TCP segment accounted as dronewatch.core.tcp.segment accounts it: Zeek's endpoint states,
   sequence space, history letters and content gaps, on the flow's `array('q')` of TCP state.

   tcp_segment(t, from_orig, flags, seq, ack, plen, ts, last_ts, history) -> (events, history,
   last_ts, flipped) does what segment(flow, ...) does to the flow's state, history and last_ts,
   except that where the Python code calls `flip(flow)` this code swaps the two endpoint blocks
   of `t` itself (tcp.swap_roles) and returns flipped = 1: the caller then swaps the flow's other
   fields. At most one flip happens per segment (a SYN-ACK-only history turned round by an ACK or
   data, or a SYN seen after its SYN-ACK: the first has no SYN, the second has one).

   The C walk (_fastpath.c) runs the same code (`dw_tcp_segment`, `dw_tcp_reuse`: _tcp.h) on the
   segments it accounts without the engine.

   The slot layout and the constants are dronewatch.core.tcp's; change them there and here
   together (tests/unit/core/test_tcp_c.py holds this code to the Python one). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_tcp.h"

/* Endpoint states. */
#define INACTIVE 0
#define SYN_SENT 1
#define SYN_ACK_SENT 2
#define PARTIAL 3
#define ESTABLISHED 4
#define CLOSED 5
#define RESET 6

/* Slots of one endpoint's block. */
#define LAST 0
#define LREL 1
#define ACK 2
#define AREL 3
#define RXMIT 4
#define GAPS 5
#define FLAGS 6
#define START 7
#define STATE 8
#define PREV 9
#define DID_CLOSE 10
#define FIN_CNT 11
#define HIST_SYN 12
#define HIST_FIN 13
#define HIST_RST 14
#define SEEN 15
#define HELD 16 /* one range [low, high), low 0: none (tcp.HOLES == 1) */
#define BLOCK 18
#define FAST 36
#define MASK 37
#define MISSED 38
#define SYN_TS 39
#define SKIP 40
#define ACKED 42
#define FEED 44
#define DUE 46
#define SIZE 47

#define M_PARTIAL ((int64_t)1 << 32)
#define F_INIT 1
#define F_SEEN 2
#define F_ACTIVE 4
#define F_SKIP 8

#define HIST_SYN_PKT 0x1
#define HIST_FIN_PKT 0x2
#define HIST_RST_PKT 0x4
#define HIST_FIN_RST_PKT 0x8
#define HIST_DATA_PKT 0x10
#define HIST_ACK_PKT 0x20
#define HIST_MULTI_FLAG_PKT 0x40

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

#define TOO_LARGE_SEQ_DELTA 1048576
#define MAX_ABOVE_HOLE 16384

#define EV_CLOSED 1
#define EV_ATTEMPT 2
#define EV_REJECTED 4
#define EV_HALF_CLOSED 8


typedef struct {
    int64_t *t;
    int is_orig;
    int e, p;        /* the sender's block, the peer's */
    char *hist;      /* the history, as it grows */
    Py_ssize_t len;  /* its length */
    int flipped;
} Seg;

static int64_t delta(int64_t a, int64_t b) {
    uint32_t d = (uint32_t)((uint64_t)a - (uint64_t)b);
    return d >= 0x80000000u ? (int64_t)d - ((int64_t)1 << 32) : (int64_t)d;
}

static int64_t mask32(int64_t v) { return (int64_t)(uint32_t)(uint64_t)v; }

static int64_t rel_seq(const int64_t *t, int e, int64_t seq) {
    return t[e + LREL] + delta(seq, t[e + LAST]);
}

static void set_state(int64_t *t, int e, int64_t state) {
    if (t[e + STATE] != state) {
        t[e + PREV] = t[e + STATE];
        t[e + STATE] = state;
        if (state == INACTIVE)
            t[e + FLAGS] &= ~(int64_t)F_ACTIVE;
        else
            t[e + FLAGS] |= F_ACTIVE;
    }
}

static void init_seq(int64_t *t, int e, int64_t start, int64_t ack, int64_t last) {
    t[e + START] = mask32(start);
    t[e + ACK] = mask32(ack);
    t[e + AREL] = delta(ack, start);
    t[e + LAST] = mask32(last);
    t[e + LREL] = delta(last, start);
    t[e + FLAGS] |= F_INIT;
}

static void swap_roles(int64_t *t) {
    int64_t tmp[BLOCK];
    memcpy(tmp, t, sizeof tmp);
    memcpy(t, t + BLOCK, sizeof tmp);
    memcpy(t + BLOCK, tmp, sizeof tmp);
    for (int pair = SKIP; pair <= FEED; pair += 2) {
        int64_t v = t[pair];
        t[pair] = t[pair + 1];
        t[pair + 1] = v;
    }
}

static void add(Seg *s, char code) {
    s->hist[s->len++] = s->is_orig ? code : (char)(code - 'A' + 'a');
}

static void flip(Seg *s) {
    swap_roles(s->t);
    s->flipped = 1;
    s->is_orig = !s->is_orig;
    int e = s->e;
    s->e = s->p;
    s->p = e;
}

/* Zeek's CheckHistory (tcp._Segment.check). */
static int check(Seg *s, int64_t mask, char code) {
    if ((code == 'A' || code == 'D') && s->len == 1 && s->hist[0] == 'H') {
        flip(s);
        s->hist[0] = '^';
        s->hist[1] = 'h';
        s->len = 2;
    }
    if (!s->is_orig) mask <<= 16;
    if (!(s->t[MASK] & mask)) {
        s->t[MASK] |= mask;
        add(s, code);
        return 0;
    }
    return 1;
}

static int scaled(int64_t n) {
    while (n >= 10 && n % 10 == 0) n /= 10;
    return n == 1;
}

static int clean(const int64_t *t) {
    for (int e = 0; e <= BLOCK; e += BLOCK) {
        int64_t state = t[e + STATE];
        if (state != ESTABLISHED && !(state == CLOSED && t[e + PREV] == ESTABLISHED)) return 0;
    }
    return 1;
}

static void partial(int64_t *t, int from_orig, int syn, int ackf) {
    if (from_orig) {
        if (!(t[FLAGS] & F_SEEN) && (!syn || ackf)) t[MASK] |= M_PARTIAL;
    } else if (!(t[BLOCK + FLAGS] & F_SEEN) && !syn) {
        t[MASK] |= M_PARTIAL;
    }
}

static void init_endpoint(int64_t *t, int e, int syn, int64_t seq, int64_t end) {
    int64_t state = t[e + STATE];
    if (state == INACTIVE) {
        if (syn)
            init_seq(t, e, seq, seq, end);
        else
            init_seq(t, e, seq - 1, seq - 1, seq);
    } else if (syn && (((state == SYN_SENT || state == SYN_ACK_SENT) && seq != t[e + START]) ||
                       state == ESTABLISHED || state == PARTIAL ||
                       (state == RESET && t[e + PREV] == INACTIVE))) {
        init_seq(t, e, seq, seq, end);
    }
}

/* Zeek's update_history (tcp._history). */
static void history(Seg *s, int flags, int64_t rel, int64_t plen) {
    int syn = flags & TCP_SYN, fin = flags & TCP_FIN, rst = flags & TCP_RST;
    int bits = !!syn + !!fin + !!rst;
    int64_t *t = s->t;
    if (bits > 1) {
        if (fin && rst)
            check(s, HIST_FIN_RST_PKT, 'I');
        else
            check(s, HIST_MULTI_FLAG_PKT, 'Q');
    } else if (bits == 1) {
        if (syn) {
            char code = flags & TCP_ACK ? 'H' : 'S';
            if (check(s, HIST_SYN_PKT, code) && rel != t[s->e + HIST_SYN]) add(s, code);
            t[s->e + HIST_SYN] = rel;
        }
        if (fin) {
            if (check(s, HIST_FIN_PKT, 'F') && rel + plen != t[s->e + HIST_FIN]) add(s, 'F');
            t[s->e + HIST_FIN] = rel + plen;
        }
        if (rst) {
            if (check(s, HIST_RST_PKT, 'R') && rel != t[s->e + HIST_RST]) add(s, 'R');
            t[s->e + HIST_RST] = rel;
        }
    } else if (plen) {
        check(s, HIST_DATA_PKT, 'D');
    } else if (flags & TCP_ACK) {
        check(s, HIST_ACK_PKT, 'A');
    }
}

/* Zeek's update_last_seq (tcp._update_last). */
static void update_last(Seg *s, int e, int64_t end, int syn, int fin, int rst, int64_t plen) {
    int64_t *t = s->t;
    int64_t d = delta(end, t[e + LAST]);
    if ((syn || rst) && (d > TOO_LARGE_SEQ_DELTA || d < -TOO_LARGE_SEQ_DELTA)) {
        /* not trusted */
    } else if (fin && t[e + LAST] == mask32(t[e + START] + 1)) {
        t[e + LAST] = end;
        t[e + LREL] += d;
    } else if (t[e + STATE] == RESET) {
        /* nothing */
    } else if (d > 0) {
        t[e + LAST] = end;
        t[e + LREL] += d;
    } else if (plen > 0) {
        t[e + RXMIT] += 1;
        if (scaled(t[e + RXMIT])) add(s, 'T');
    }
}

/* Zeek's UpdateStateMachine and ConnectionClosed (tcp._state_machine). */
static int state_machine(Seg *s, int syn, int fin, int rst, int ackf, int64_t seq, int64_t plen) {
    int64_t *t = s->t;
    int e = s->e, p = s->p;
    int64_t state = t[e + STATE];
    int close = 0, events = 0;
    if (state == INACTIVE) {
        if (syn) {
            if (s->is_orig) {
                set_state(t, e, ackf ? SYN_ACK_SENT : SYN_SENT);
                events |= EV_ATTEMPT;
            } else {
                int64_t peer = t[p + STATE];
                if (!ackf && peer == SYN_ACK_SENT && seq == t[e + START]) {
                    /* A SYN and SYN-ACK seen in reverse order: flip and establish. */
                    flip(s);
                    s->hist[s->len++] = '^';
                    e = s->e;
                    p = s->p;
                    set_state(t, p, ESTABLISHED);
                }
                if (t[p + STATE] == SYN_SENT) set_state(t, p, ESTABLISHED);
                set_state(t, e, ESTABLISHED);
            }
        }
        if (fin) {
            set_state(t, e, CLOSED);
            close = 1;
        }
        if (rst) {
            set_state(t, e, RESET);
            close = 1;
            int reject = s->is_orig
                             ? t[p + STATE] == ESTABLISHED
                             : (t[p + STATE] == SYN_SENT || t[p + STATE] == SYN_ACK_SENT);
            if (reject) events |= EV_REJECTED;
        }
        if (t[e + STATE] == INACTIVE) {
            if (!s->is_orig && plen == 0 && t[p + STATE] == SYN_SENT) {
                /* an ACK of the SYN before the SYN-ACK: not yet a partial connection */
            } else if (ackf && t[p + STATE] == ESTABLISHED) {
                set_state(t, e, ESTABLISHED);
            } else {
                set_state(t, e, PARTIAL);
            }
        }
    } else if (state == SYN_SENT || state == SYN_ACK_SENT) {
        if (fin) {
            set_state(t, e, CLOSED);
            close = 1;
        }
        if (rst) {
            set_state(t, e, RESET);
            close = 1;
        }
    } else if (state == ESTABLISHED || state == PARTIAL) {
        if (syn && state == PARTIAL && t[p + STATE] == INACTIVE && !ackf) set_state(t, e, SYN_SENT);
        if (fin && !rst) {
            set_state(t, e, CLOSED);
            if (t[p + STATE] == RESET && t[p + PREV] == CLOSED) set_state(t, p, CLOSED);
            close = 1;
        }
        if (rst) {
            set_state(t, e, RESET);
            close = 1;
        }
    } else if (state == CLOSED) {
        if (rst && t[p + STATE] != CLOSED) {
            set_state(t, e, RESET);
            if (!t[e + DID_CLOSE]) close = 1;
        }
    }
    if (close && !t[e + DID_CLOSE]) {
        t[e + DID_CLOSE] = 1;
        if (t[e + STATE] == RESET || t[p + DID_CLOSE] || t[p + STATE] == INACTIVE)
            events |= EV_CLOSED;
        else
            events |= EV_HALF_CLOSED;
    }
    return events;
}

/* Content gaps (tcp._seen, tcp._acked, tcp._gap), with the one held range tcp.HOLES keeps. */
static void seen(int64_t *t, int e, int64_t lo, int64_t n) {
    if (t[e + FLAGS] & F_SKIP) return;
    int64_t hi = lo + n, at = t[e + SEEN];
    int64_t *held = t + e + HELD;
    if (hi <= at) return; /* a retransmission */
    if (lo <= at) {
        at = hi;
        if (held[0] && held[0] <= at) {
            if (held[1] > at) at = held[1];
            held[0] = held[1] = 0;
        }
        t[e + SEEN] = at;
        return;
    }
    if (held[0]) { /* merged with the new range, or the two closest merged: one range */
        if (lo < held[0]) held[0] = lo;
        if (hi > held[1]) held[1] = hi;
    } else {
        held[0] = lo;
        held[1] = hi;
    }
    if ((t[e + AREL] == 0 || t[e + AREL] == 1) && held[1] - held[0] > MAX_ABOVE_HOLE) {
        held[0] = held[1] = 0;
        t[e + FLAGS] |= F_SKIP;
    }
}

static void gap(Seg *s, int p, int64_t n, int report) {
    if (!report) return;
    int64_t *t = s->t;
    t[MISSED] += n;
    t[p + GAPS] += 1;
    if (scaled(t[p + GAPS])) s->hist[s->len++] = p == 0 ? 'G' : 'g';
}

static void acked(Seg *s, int p, int64_t upto) {
    int64_t *t = s->t;
    if (t[p + FIN_CNT] && upto > t[p + HIST_FIN]) upto = t[p + HIST_FIN];
    int64_t at = t[p + SEEN];
    if (upto <= at || (upto <= 2 && (t[MASK] & M_PARTIAL))) return;
    int report = !(t[p + FLAGS] & F_SKIP) && clean(t);
    int64_t *held = t + p + HELD;
    if (held[0] && held[0] < upto) {
        gap(s, p, held[0] - at, report);
        at = held[0] > held[1] ? held[0] : held[1];
        held[0] = held[1] = 0;
    }
    if (upto > at) {
        gap(s, p, upto - at, report);
        at = upto;
        if (held[0] && held[0] <= at) { /* data held from `upto` on now follows */
            if (held[1] > at) at = held[1];
            held[0] = held[1] = 0;
        }
    }
    t[p + SEEN] = at;
}

static int unsettled(const int64_t *t) {
    for (int e = 0; e <= BLOCK; e += BLOCK)
        if (t[e + DID_CLOSE] || t[e + STATE] == CLOSED || t[e + STATE] == RESET) return 1;
    return 0;
}

int dw_tcp_segment(int64_t *t, int from_orig, int flags, int64_t seq, int64_t ack, int64_t plen,
                   double ts, double *last_ts, char *hist, Py_ssize_t *hlen, int *flipped) {
    Seg s = {t, from_orig, from_orig ? 0 : BLOCK, from_orig ? BLOCK : 0, hist, *hlen, 0};
    int syn = flags & TCP_SYN, fin = flags & TCP_FIN, rst = flags & TCP_RST, ackf = flags & TCP_ACK;
    partial(t, from_orig, syn, ackf);
    int64_t seg_len = plen + (syn ? 1 : 0) + (fin ? 1 : 0);
    if (rst) seg_len -= plen;
    int64_t end = mask32(seq + seg_len);
    init_endpoint(t, s.e, syn, seq, end);
    t[s.e + FLAGS] |= F_SEEN;
    int64_t rel = rel_seq(t, s.e, seq);
    history(&s, flags, rel, plen);
    int e = s.e, p = s.p; /* after a flip, the sender's block */
    if (!(t[DID_CLOSE] && t[BLOCK + DID_CLOSE]) && ts > *last_ts) *last_ts = ts;
    if (fin) t[e + FIN_CNT] += 1;
    int64_t upto = 0;
    if (ackf) {
        if (t[p + STATE] == INACTIVE) {
            init_seq(t, p, ack - 1, ack - 1, ack - 1); /* as if a SYN had been seen */
        } else {
            int64_t d = delta(ack, t[p + ACK]);
            upto = t[p + AREL] + d;
            if (upto < 0) upto = 0;
            if (!rst && t[p + AREL] + d >= 0 && d > 0 && !(ack == 0 && d > TOO_LARGE_SEQ_DELTA)) {
                t[p + ACK] = ack;
                t[p + AREL] += d;
            }
        }
    }
    update_last(&s, e, end, syn, fin, rst, plen);
    int events = state_machine(&s, syn, fin, rst, ackf, seq, plen);
    e = s.is_orig ? 0 : BLOCK; /* the state machine may have flipped the roles */
    if (upto) acked(&s, BLOCK - e, upto);
    if (plen && !rst && rel >= 0) seen(t, e, rel + (syn ? 1 : 0), plen);
    if (events & EV_ATTEMPT) memcpy(&t[SYN_TS], &ts, sizeof ts);
    t[FAST] = unsettled(t) ? 0 : 1;
    *hlen = s.len;
    *flipped = s.flipped;
    return events;
}

int dw_tcp_reuse(const int64_t *t, int flags, int64_t seq) {
    if (!(flags & TCP_SYN)) return 0;
    int e = 0;
    if (flags & TCP_ACK) {
        if (t[STATE] != INACTIVE) return 0; /* not a half-open connection */
        e = BLOCK;
    }
    if (!(t[DID_CLOSE] || t[BLOCK + DID_CLOSE])) {
        if (seq == t[e + START]) return 0;
        if (!(flags & TCP_ACK) && t[e + STATE] == SYN_ACK_SENT && t[BLOCK + STATE] == INACTIVE &&
            seq == t[BLOCK + START])
            return 0; /* a SYN and SYN-ACK seen in reverse order */
    }
    return 1;
}

static PyObject *tcp_segment(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int from_orig, flags;
    long long seq, ack, plen;
    double ts, last_ts;
    PyObject *hist_in;
    if (!PyArg_ParseTuple(args, "w*piLLLddU", &buf, &from_orig, &flags, &seq, &ack, &plen, &ts,
                          &last_ts, &hist_in))
        return NULL;
    PyObject *result = NULL;
    char small[64 + DW_HISTORY_ROOM], *hist = small;
    if (buf.len < (Py_ssize_t)(SIZE * sizeof(int64_t)) || buf.itemsize != sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "tcp_segment: not a TCP state array");
        goto done;
    }
    Py_ssize_t hlen, len;
    const char *h = PyUnicode_AsUTF8AndSize(hist_in, &hlen);
    if (h == NULL) goto done;
    if (hlen > 64 && (hist = PyMem_Malloc(hlen + DW_HISTORY_ROOM)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memcpy(hist, h, hlen);
    len = hlen;
    int flipped;
    int events = dw_tcp_segment(buf.buf, from_orig, flags, seq, ack, plen, ts, &last_ts, hist, &len,
                                &flipped);
    PyObject *hist_out;
    if (len == hlen && memcmp(hist, h, hlen) == 0) {
        hist_out = Py_NewRef(hist_in);
    } else {
        hist_out = PyUnicode_FromStringAndSize(hist, len);
        if (hist_out == NULL) goto done;
    }
    result = Py_BuildValue("iNdi", events, hist_out, last_ts, flipped);
done:
    if (hist != small) PyMem_Free(hist);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *tcp_reuse(PyObject *self, PyObject *args) {
    Py_buffer buf;
    int flags;
    long long seq;
    if (!PyArg_ParseTuple(args, "y*iL", &buf, &flags, &seq)) return NULL;
    PyObject *result = NULL;
    if (buf.len < (Py_ssize_t)(SIZE * sizeof(int64_t)) || buf.itemsize != sizeof(int64_t))
        PyErr_SetString(PyExc_ValueError, "tcp_reuse: not a TCP state array");
    else
        result = PyBool_FromLong(dw_tcp_reuse(buf.buf, flags, seq));
    PyBuffer_Release(&buf);
    return result;
}

static PyMethodDef tcp_methods[] = {
    {"tcp_segment", tcp_segment, METH_VARARGS,
     "tcp_segment(t, from_orig, flags, seq, ack, plen, ts, last_ts, history) -> (events, "
     "history, last_ts, flipped)\n\n"
     "Account one TCP segment on the state array t as dronewatch.core.tcp.segment does; on a "
     "flip the endpoint blocks of t are swapped here and flipped is 1."},
    {"tcp_reuse", tcp_reuse, METH_VARARGS,
     "tcp_reuse(t, flags, seq) -> whether the segment starts a new connection on the flow's "
     "5-tuple (dronewatch.core.tcp.is_reuse)."},
    {NULL, NULL, 0, NULL},
};

int dw_add_tcp(PyObject *module) { return PyModule_AddFunctions(module, tcp_methods); }
