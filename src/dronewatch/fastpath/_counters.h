/* Frame counters: per-flow state of a drone-link follower that the C walk can feed itself.
 *
 * A follower analyzer that recognises a link attaches a counter to the flow
 * (`Flow.follow(name, counter)`); from then on its `packet` hook does nothing for that flow but
 * feed the datagram's payload to the counter, so the walk may call `feed` directly instead of
 * building a `Packet` and calling Python. Every counter type derives from `FrameCounter`, whose
 * first member after the object header is the C feed function.
 */
#ifndef DRONEWATCH_COUNTERS_H
#define DRONEWATCH_COUNTERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef struct dw_FrameCounter dw_FrameCounter;

/* Count the frames of one datagram's payload, sent by the flow's originator or not; returns what
 * the Python `feed` returns (frames counted, or -1 for a payload the protocol rejects as a
 * whole). Never fails. */
typedef Py_ssize_t (*dw_feed_fn)(dw_FrameCounter *self, const uint8_t *data, Py_ssize_t len,
                                 int from_orig);

struct dw_FrameCounter {
    PyObject_HEAD
    dw_feed_fn feed;
};

extern PyTypeObject dw_FrameCounterType;
extern PyTypeObject dw_DumlCounterType;
extern PyTypeObject dw_ArsdkCounterType;
extern PyTypeObject dw_MavlinkCounterType;
extern PyTypeObject dw_MqttCounterType;
extern PyTypeObject dw_TelloStateCounterType;

/* The indexes of the bits set in `bits` (n bits, least significant first in each byte), as a
 * frozenset of ints; NULL with an exception set on failure. */
PyObject *dw_bit_set(const uint8_t *bits, int n);

/* dict[key] = count; takes the reference to `key` (which may be NULL after a failed build).
 * 0, or -1 with an exception set. */
int dw_dict_count(PyObject *dict, PyObject *key, long long count);

/* Ready the counter types and add them to the module: 0, or -1 with an exception set. */
int dw_add_counters(PyObject *module);

#endif
