/* The TCP state machine of _tcp.c, for the C walk (_fastpath.c) and the module's tcp_segment. */
#ifndef DRONEWATCH_TCP_H
#define DRONEWATCH_TCP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define DW_HISTORY_ROOM 16 /* letters one segment may add to a history, with room to spare (6) */

/* One segment accounted on the TCP state `t` (dronewatch.core.tcp.segment): `hist` holds the
 * flow's history, `*hlen` characters, with DW_HISTORY_ROOM more bytes of room; the letters the
 * segment writes are added there and `*hlen` grows. `*last_ts` is the flow's last packet time,
 * moved on as the engine moves it. On a flip the endpoint blocks of `t` are swapped and
 * `*flipped` is 1 (the caller swaps the flow's other fields). Returns the tcp.EV_* bits. */
int dw_tcp_segment(int64_t *t, int from_orig, int flags, int64_t seq, int64_t ack, int64_t plen,
                   double ts, double *last_ts, char *hist, Py_ssize_t *hlen, int *flipped);

/* Whether a segment starts a new connection on the flow's 5-tuple (tcp.is_reuse). */
int dw_tcp_reuse(const int64_t *t, int flags, int64_t seq);

#endif
