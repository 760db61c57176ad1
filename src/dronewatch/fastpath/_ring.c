/* The receive ring of a Linux AF_PACKET socket (TPACKET_V3), read a block at a time.
 *
 * The kernel fills the ring's blocks in order and hands each one over (`block_status` with
 * TP_STATUS_USER) when it is full or its timeout expires. `ring_fields` reads the packets of the
 * blocks handed over from one index on into the columns of a `PcapBatch` (where each frame starts
 * in the ring, its lengths, its time), the same columns `record_fields` makes of a pcap file, so
 * the one walk reads both; `ring_release` gives blocks back to the kernel once that walk is done.
 * Layouts: <linux/if_packet.h> (struct tpacket_block_desc, struct tpacket3_hdr) and
 * Documentation/networking/packet_mmap.rst. The socket, the ring's size and when to read are set
 * up in Python (dronewatch.capture.tpacket).
 */
#include "_counters.h"

#include <string.h>

#ifdef __linux__
#include <linux/if_packet.h>

#define VLAN_TAG_LEN 4
#define ETH_P_8021Q 0x8100

/* The block header, at the start of block `index`. */
static inline struct tpacket_block_desc *block_at(uint8_t *ring, Py_ssize_t block_size,
                                                  Py_ssize_t index) {
    return (struct tpacket_block_desc *)(ring + index * block_size);
}

static inline uint32_t block_status(struct tpacket_block_desc *bd) {
    /* The kernel writes the packets before it sets the status: read it with acquire order. */
    return __atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE);
}

/* Where a packet's frame starts and how long it is, with its VLAN tag put back in front of the
 * EtherType: the kernel strips the tag into the header (TP_STATUS_VLAN_VALID), libpcap writes it
 * back into the 4 bytes reserved before the frame (PACKET_RESERVE), and so does this. */
static void frame_of(struct tpacket3_hdr *h, uint8_t *base, Py_ssize_t *at, uint32_t *caplen,
                     uint32_t *wirelen) {
    uint8_t *frame = (uint8_t *)h + h->tp_mac;
    *caplen = h->tp_snaplen;
    *wirelen = h->tp_len;
    const Py_ssize_t room = TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) + sizeof(struct sockaddr_ll);
    if ((h->tp_status & TP_STATUS_VLAN_VALID) && h->tp_snaplen >= 12 &&
        (Py_ssize_t)h->tp_mac >= room + VLAN_TAG_LEN) {
        uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) && h->hv1.tp_vlan_tpid
                            ? h->hv1.tp_vlan_tpid
                            : ETH_P_8021Q;
        uint16_t tci = (uint16_t)h->hv1.tp_vlan_tci;
        memmove(frame - VLAN_TAG_LEN, frame, 12);
        frame -= VLAN_TAG_LEN;
        frame[12] = tpid >> 8, frame[13] = tpid & 0xFF;
        frame[14] = tci >> 8, frame[15] = tci & 0xFF;
        /* Done once: a block read again (after an error) must not be shifted twice. */
        h->tp_status &= ~(uint32_t)TP_STATUS_VLAN_VALID;
        h->tp_mac -= VLAN_TAG_LEN;
        h->tp_snaplen += VLAN_TAG_LEN;
        h->tp_len += VLAN_TAG_LEN;
        *caplen = h->tp_snaplen;
        *wirelen = h->tp_len;
    }
    *at = frame - base;
}

static PyObject *column(Py_ssize_t room) {
    return PyBytes_FromStringAndSize(NULL, room * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *ring_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t block_size, blocks, first, most;
    unsigned long long snaplen;
    if (!PyArg_ParseTuple(args, "w*nnnnK", &buf, &block_size, &blocks, &first, &most, &snaplen))
        return NULL;
    PyObject *at_o = NULL, *cap_o = NULL, *wire_o = NULL, *ts_o = NULL, *result = NULL;
    uint8_t *ring = buf.buf;
    if (block_size < (Py_ssize_t)sizeof(struct tpacket_block_desc) || blocks < 1 ||
        block_size * blocks > buf.len || first < 0 || first >= blocks) {
        PyErr_SetString(PyExc_ValueError, "ring_fields: the ring's geometry does not fit buf");
        goto done;
    }
    if (most > blocks) most = blocks;
    /* The blocks handed over, in order from `first`, and how many packets they hold. */
    Py_ssize_t taken = 0, rows = 0;
    while (taken < most) {
        struct tpacket_block_desc *bd = block_at(ring, block_size, (first + taken) % blocks);
        if (!(block_status(bd) & TP_STATUS_USER)) break;
        rows += bd->hdr.bh1.num_pkts;
        taken++;
    }
    at_o = column(rows), cap_o = column(rows), wire_o = column(rows), ts_o = column(rows);
    if (at_o == NULL || cap_o == NULL || wire_o == NULL || ts_o == NULL) goto done;
    int64_t *at = (int64_t *)PyBytes_AS_STRING(at_o), *cap = (int64_t *)PyBytes_AS_STRING(cap_o);
    int64_t *wire = (int64_t *)PyBytes_AS_STRING(wire_o);
    double *ts = (double *)PyBytes_AS_STRING(ts_o);
    long long wire_total = 0, truncated = 0;
    Py_ssize_t n = 0;
    for (Py_ssize_t k = 0; k < taken; k++) {
        Py_ssize_t index = (first + k) % blocks;
        struct tpacket_block_desc *bd = block_at(ring, block_size, index);
        uint8_t *end = (uint8_t *)bd + block_size;
        uint32_t offset = bd->hdr.bh1.offset_to_first_pkt;
        for (uint32_t p = 0; p < bd->hdr.bh1.num_pkts; p++) {
            struct tpacket3_hdr *h = (struct tpacket3_hdr *)((uint8_t *)bd + offset);
            if (offset < sizeof(struct tpacket_block_desc) ||
                (uint8_t *)h + sizeof(struct tpacket3_hdr) > end ||
                (uint8_t *)h + h->tp_mac + h->tp_snaplen > end) {
                PyErr_Format(PyExc_ValueError, "ring block %zd: packet %u lies outside the block",
                             index, p);
                goto done;
            }
            Py_ssize_t frame_at;
            uint32_t incl, orig;
            frame_of(h, ring, &frame_at, &incl, &orig);
            if (incl > snaplen) incl = (uint32_t)snaplen;
            /* `sec + nsec * 1e-9` as the Python reader computes it: the product rounded to a
             * double before the sum (volatile: no fused multiply-add may skip that rounding). */
            volatile double part = (double)h->tp_nsec * 1e-9;
            ts[n] = (double)h->tp_sec + part;
            at[n] = frame_at;
            cap[n] = incl;
            wire[n] = orig;
            wire_total += orig;
            truncated += incl < orig;
            n++;
            if (h->tp_next_offset == 0) break;
            offset += h->tp_next_offset;
        }
    }
    Py_ssize_t size = n * (Py_ssize_t)sizeof(int64_t);
    if (_PyBytes_Resize(&at_o, size) < 0 || _PyBytes_Resize(&cap_o, size) < 0 ||
        _PyBytes_Resize(&wire_o, size) < 0 || _PyBytes_Resize(&ts_o, size) < 0)
        goto done;
    result = Py_BuildValue("OOOOLLn", at_o, cap_o, wire_o, ts_o, wire_total, truncated, taken);
done:
    Py_XDECREF(at_o);
    Py_XDECREF(cap_o);
    Py_XDECREF(wire_o);
    Py_XDECREF(ts_o);
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *ring_release(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t block_size, blocks, first, count;
    if (!PyArg_ParseTuple(args, "w*nnnn", &buf, &block_size, &blocks, &first, &count)) return NULL;
    if (block_size < (Py_ssize_t)sizeof(struct tpacket_block_desc) || blocks < 1 ||
        block_size * blocks > buf.len || first < 0 || first >= blocks || count < 0 ||
        count > blocks) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "ring_release: the ring's geometry does not fit buf");
        return NULL;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        struct tpacket_block_desc *bd = block_at(buf.buf, block_size, (first + k) % blocks);
        /* Every read of the block happens before the kernel may write it again. */
        __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    }
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

#else /* not Linux: there is no AF_PACKET ring to read */

static PyObject *ring_fields(PyObject *self, PyObject *args) {
    PyErr_SetString(PyExc_OSError, "AF_PACKET rings exist on Linux only");
    return NULL;
}

static PyObject *ring_release(PyObject *self, PyObject *args) {
    PyErr_SetString(PyExc_OSError, "AF_PACKET rings exist on Linux only");
    return NULL;
}

#endif

static PyMethodDef ring_methods[] = {
    {"ring_fields", ring_fields, METH_VARARGS,
     "ring_fields(ring, block_size, blocks, first, most, snaplen) -> (data_at, caplen, wirelen, "
     "ts, wire_bytes, truncated, blocks taken)\n\n"
     "The packets of the blocks the kernel handed over, in ring order from block `first` (at "
     "most `most` blocks), as the columns of a batch over `ring` (bytes of int64, and of double "
     "for ts); a stripped VLAN tag is written back in front of its frame."},
    {"ring_release", ring_release, METH_VARARGS,
     "ring_release(ring, block_size, blocks, first, count) -> None\n\n"
     "Hand `count` blocks from `first` on back to the kernel (TP_STATUS_KERNEL)."},
    {NULL, NULL, 0, NULL},
};

int dw_add_ring(PyObject *module) { return PyModule_AddFunctions(module, ring_methods); }
