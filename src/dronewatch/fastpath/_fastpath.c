/* The bulk path's inner loops in C: the pcap record walk and the per-row flow-table walk.
 *
 * `record_fields` reads the record headers of a classic pcap file that lie whole in a read buffer
 * into columns (where each frame starts, its lengths, its time).
 * `block_fields` does the same for the enhanced packet blocks of a pcapng section.
 * `walk` goes over the rows of a `PcapBatch` in capture order, reads the link, IP and transport
 * headers of each one (taking off the encapsulations of remote mirrors and overlays: ERSPAN, GRE,
 * VXLAN, Geneve, MPLS, PPPoE, 802.11 in an Aruba GRE tunnel, as the per-packet decoder does; the
 * packets of an 802.11 A-MSDU each as a row of its own), counts the frames that are not IP
 * of the kinds the decoder only counts (802.11 control frames, encrypted data...), and adds
 * the packets of settled flows (TCP, UDP, ICMP and ICMPv6) to per-flow counters kept here;
 * every other row goes back to Python (`handle`, `follow`, `sweep`) in order, after the counters
 * kept here have been written to their `Flow` objects, so Python code always sees exact counts;
 * a row read whole here goes with the decoder's `Packet` of it, made here (`row_packet`).
 * A TCP data segment is counted here when it changes nothing but the sequence numbers of a settled
 * connection (`dronewatch.core.tcp`: no new history letter, no retransmission that writes a `T`,
 * no data held above a hole), its sequence and acknowledgement numbers and content gaps written
 * to the flow's TCP state by the engine's own TCP state machine (`_tcp.c`). A segment
 * without payload that changes the state (SYN, FIN, RST, a new letter, a closed connection's
 * ACK) is accounted here by the TCP state machine itself (`_tcp.c`, `tcp_state_path`) unless the
 * engine must act on it (its timer is due, it reuses the 5-tuple, it flips the flow, its ACK
 * gives up a hole of a reassembled stream); the timers a close calls for are set by the engine
 * (`timers`). Every other segment goes to Python.
 * A datagram of a drone link whose followers all keep their state in frame counters
 * (`_counters.h`) is fed to those counters here, without a call into Python.
 * In one of several processes sharing a capture (`dronewatch.core.split`), the rows of flows
 * another process makes are skipped here, after the sweep their time may call for.
 * Without this extension every packet goes the per-packet path; the tests compare the two on
 * every capture.
 * Facts only: what is parsed here is fixed by the formats, what to count is decided by the
 * `Flow` state the engine keeps.
 */
#include "_counters.h"
#include "_tcp.h"

#include <math.h>
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

/* The slots of a TCP flow's state (`Flow.tcp`, an array of int64; `dronewatch.core.tcp`): a
 * block per endpoint, the originator's first, then the connection's. */
#define T_LAST 0   /* sequence number one past the endpoint's highest segment (32-bit) */
#define T_LREL 1   /* T_LAST as an offset from T_START, wraps counted */
#define T_ACK 2    /* highest acknowledgement of the endpoint's data by the peer (32-bit) */
#define T_AREL 3   /* T_ACK as an offset from T_START */
#define T_RXMIT 4  /* retransmitted data segments */
#define T_GAPS 5   /* content gaps reported for the endpoint's data */
#define T_FLAGS 6  /* F_* */
#define T_START 7  /* the endpoint's initial sequence number */
#define T_STATE 8  /* the endpoint's state (ESTABLISHED, CLOSED...) */
#define T_PREV 9   /* the state before the last change */
#define T_FIN_CNT 11
#define T_SEEN 15  /* one past the endpoint's bytes seen in order (content gaps) */
#define T_HELD 16  /* a range of data held above a hole (low, high; low 0: none) */
#define T_BLOCK 18
#define T_FAST 36  /* 1 while the segments without SYN, FIN or RST may be counted here */
#define T_MASK 37  /* history mask and M_PARTIAL */
#define HIST_ACK_PKT 0x20 /* the mask's bit of a bare ACK (the responder's 16 bits higher) */
#define T_MISSED 38 /* bytes of the connection's content gaps */
#define T_SYN_TS 39 /* time of an attempt's SYN, a double's bits (0: none) */
#define T_SKIP 40  /* two slots, orig's and resp's stream: passed over below this (0: none) */
#define T_ACKED 42 /* two slots: how far the stream layer gave up each stream's holes */
#define T_FEED 44  /* two slots: where a follower's counter may take each stream's next bytes */
#define T_DUE 46   /* when the engine's close or expire timer is due, a double's bits (0: none) */
#define T_SIZE 47
#define F_INIT 1   /* the endpoint's sequence numbers are set */
#define F_SEEN 2   /* the endpoint sent a segment */
#define F_ACTIVE 4 /* the endpoint's state is not INACTIVE */
#define F_SKIP 8   /* the endpoint's content is no longer followed for gaps */
#define M_PARTIAL ((int64_t)1 << 32)
#define S_INACTIVE 0
#define S_SYN_SENT 1
#define S_SYN_ACK_SENT 2
#define S_ESTABLISHED 4
#define S_CLOSED 5
#define TOO_LARGE_SEQ_DELTA 1048576

static PyObject *s_tcp, *s_stream;
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

#define PREFETCH_BYTES 4096 /* how far ahead of the record headers `record_fields` fetches */
#define PREFETCH_ROWS 8     /* how many rows ahead the walk fetches a frame's first lines */

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
    /* Each header's place is read from the one before: a chain of loads, each waiting on memory.
       The records lie one after the other, so the lines ahead are fetched before they are asked
       for (every line up to PREFETCH_BYTES ahead). */
    Py_ssize_t fetched = pos;
    while (pos >= 0 && pos + 16 <= end) {
        const uint8_t *h = b + pos;
        for (Py_ssize_t stop = Py_MIN(end, pos + PREFETCH_BYTES); fetched < stop; fetched += 64)
            __builtin_prefetch(b + fetched);
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

/* The enhanced packet blocks (pcapng, IETF draft-ietf-opsawg-pcapng, 4.3) that lie whole in `buf`
 * from `pos` on, one after the other, of interfaces of link type `linktype`, as `record_fields`'
 * columns plus each packet's interface. `ifaces`: (link type, seconds per timestamp unit, offset)
 * of each interface of the section. Stops at any other block, an interface of another link type,
 * and anything the per-block reader would call damage (it then reads that block itself). */
static PyObject *block_fields(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t pos;
    unsigned long long limit;
    int big, linktype;
    PyObject *ifaces;
    if (!PyArg_ParseTuple(args, "y*nKpO!i", &buf, &pos, &limit, &big, &PyTuple_Type, &ifaces,
                          &linktype))
        return NULL;
    const uint8_t *b = buf.buf;
    Py_ssize_t end = buf.len, nif = PyTuple_GET_SIZE(ifaces);
    Py_ssize_t room = end > pos ? (end - pos) / 32 + 1 : 1;
    PyObject *at_o = column(room), *cap_o = column(room), *wire_o = column(room);
    PyObject *ts_o = column(room), *if_o = column(room), *result = NULL;
    double *scales = PyMem_Malloc((nif + 1) * sizeof(double));
    double *offsets = PyMem_Malloc((nif + 1) * sizeof(double));
    int *lts = PyMem_Malloc((nif + 1) * sizeof(int));
    if (scales == NULL || offsets == NULL || lts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (at_o == NULL || cap_o == NULL || wire_o == NULL || ts_o == NULL || if_o == NULL) goto done;
    for (Py_ssize_t k = 0; k < nif; k++) {
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(ifaces, k), "idd", &lts[k], &scales[k],
                              &offsets[k]))
            goto done;
    }
    int64_t *at = (int64_t *)PyBytes_AS_STRING(at_o), *cap = (int64_t *)PyBytes_AS_STRING(cap_o);
    int64_t *wire = (int64_t *)PyBytes_AS_STRING(wire_o), *ifc = (int64_t *)PyBytes_AS_STRING(if_o);
    double *ts = (double *)PyBytes_AS_STRING(ts_o), last_ts = 0.0;
    long long wire_total = 0, truncated = 0;
    Py_ssize_t n = 0;
    Py_ssize_t fetched = pos; /* the lines ahead, fetched as `record_fields` fetches them */
    while (pos >= 0 && pos + 12 <= end) {
        const uint8_t *h = b + pos;
        for (Py_ssize_t stop = Py_MIN(end, pos + PREFETCH_BYTES); fetched < stop; fetched += 64)
            __builtin_prefetch(b + fetched);
        uint32_t blen = rd32(h + 4, big);
        if (rd32(h, big) != 6 || blen < 32 || blen % 4 || blen > limit || blen > end - pos) break;
        uint32_t iface = rd32(h + 8, big), incl = rd32(h + 20, big), orig = rd32(h + 24, big);
        if (iface >= (uint64_t)nif || lts[iface] != linktype || incl > blen - 32) break;
        uint64_t units = (uint64_t)rd32(h + 12, big) << 32 | rd32(h + 16, big);
        /* `units * scale + offset` as the per-block reader computes it (no fused multiply-add). */
        volatile double part = (double)units * scales[iface];
        last_ts = ts[n] = part + offsets[iface];
        at[n] = pos + 28;
        cap[n] = incl;
        wire[n] = orig;
        ifc[n] = iface;
        wire_total += orig;
        truncated += incl < orig;
        n++;
        pos += blen;
    }
    Py_ssize_t size = n * (Py_ssize_t)sizeof(int64_t);
    if (_PyBytes_Resize(&at_o, size) < 0 || _PyBytes_Resize(&cap_o, size) < 0 ||
        _PyBytes_Resize(&wire_o, size) < 0 || _PyBytes_Resize(&ts_o, size) < 0 ||
        _PyBytes_Resize(&if_o, size) < 0)
        goto done;
    result = Py_BuildValue("OOOOOLLnd", at_o, cap_o, wire_o, ts_o, if_o, wire_total, truncated,
                           pos, last_ts);
done:
    PyMem_Free(scales);
    PyMem_Free(offsets);
    PyMem_Free(lts);
    Py_XDECREF(at_o);
    Py_XDECREF(cap_o);
    Py_XDECREF(wire_o);
    Py_XDECREF(ts_o);
    Py_XDECREF(if_o);
    PyBuffer_Release(&buf);
    return result;
}

/* What the walk makes of one frame: an IP packet it reads (`ROW_IP`), a frame that is not IP of
 * a kind it counts (`ROW_SKIP`: the per-packet decoder would only add one to `non_ip[kind]`), an
 * 802.11 management frame (`ROW_MGMT`: the decoder counts it and hands it to the engine, whose
 * frame hooks may read it), an 802.11 A-MSDU (`ROW_AMSDU`: several packets, one a subframe, each
 * read as a row of its own, `msdu`), or anything else, handed to the per-packet decoder
 * (`ROW_PYTHON`). */
enum { ROW_PYTHON = 0, ROW_IP = 1, ROW_SKIP = 2, ROW_MGMT = 3, ROW_AMSDU = 4 };

typedef struct {
    int ok;        /* ROW_* */
    int icmp;      /* an ICMP or ICMPv6 message: its type and code stand in for the ports */
    int sport, dport; /* the decoder's ports (an ICMP message's type and code) */
    int kind;      /* ROW_SKIP, ROW_MGMT: which `non_ip` count (`SKIP_*`, SKIP_ETHERTYPE | EtherType,
                      SKIP_DOT11_MGMT | subtype) */
    long long mgmt_at, mgmt_len; /* ROW_MGMT: where the management frame starts, its length */
    long long amsdu_at, amsdu_end; /* ROW_AMSDU: where its subframes start and end */
    int amsdu_depth;               /* ROW_AMSDU: the encapsulations taken off before it */
    int tcp, control, same, low, letter, has_payload, flags;
    uint32_t seq, ack; /* a TCP segment's sequence and acknowledgement numbers */
    uint8_t key[KEY_LEN];
    long long ip_len, payload_len, payload_at, payload_stop;
    /* What else the decoder's `Packet` holds: where its MACs are (-1: none) and its VLAN tag (-1:
     * none), as `dronewatch.capture.decode` sets them (an encapsulation forgets the outer frame's
     * tag, and with an outer IP header its MACs); the outermost encapsulation it came out of
     * (`Tunnel`): its kind (`TUN_*`, 0: seen directly), identifier (-1: none), the VLAN tag of the
     * frame it came in (-1: none) and where its outer addresses lie (`tun_alen` bytes each from
     * `tun_addr_at`, the source then the destination; 0: none, MPLS and PPPoE). */
    long long dst_mac_at, src_mac_at;
    int vlan, tun_kind, tun_vlan, tun_alen;
    long long tun_ident, tun_addr_at;
    int checksums; /* how wrong checksums are taken: CK_IGNORE, CK_AUTO, CK_VERIFY (set per walk) */
} Row;

/* ---- link and encapsulation headers ---------------------------------------------------------
 * By the same rules as the per-packet decoder (`dronewatch.capture.decode.Decoder`, with the
 * encapsulations of `dronewatch.capture.encap`): whatever that decoder would read differently,
 * or count as malformed, is handed to it. `cap` is where the frame's bytes end (before an 802.11
 * FCS); offsets are from the frame's first byte. */

/* Link types read here (LINKTYPE_* of the tcpdump.org list). */
#define LT_NULL 0
#define LT_ETHERNET 1
#define LT_RAW_OPENBSD 12
#define LT_RAW_14 14
#define LT_RAW 101
#define LT_IEEE802_11 105
#define LT_LOOP 108
#define LT_LINUX_SLL 113
#define LT_IEEE802_11_RADIOTAP 127
#define LT_IPV4 228
#define LT_IPV6 229
#define LT_LINUX_SLL2 276

#define ETH_IP 0x0800
#define ETH_ARP 0x0806
#define ETH_IP6 0x86DD
#define ETH_TEB 0x6558        /* an Ethernet frame follows (GRE, Geneve) */
#define ETH_ERSPAN 0x88BE     /* type II; type I without a GRE sequence number */
#define ETH_ERSPAN_III 0x22EB
#define ETH_MPLS 0x8847
#define ETH_MPLS_MC 0x8848
#define ETH_PPPOE 0x8864
#define INNER_IP 0 /* an IP packet whose version is its first nibble */
#define INNER_DOT11 1 /* an 802.11 frame, no radiotap or FCS (GRE from an Aruba access point) */
#define IP_GRE 47
#define UDP_VXLAN 4789
#define UDP_GENEVE 6081
#define MAX_ENCAPSULATIONS 3

/* The non-IP kinds counted here, named as the decoder names them. */
enum {
    SKIP_ARP = 1, SKIP_DOT11_CTRL, SKIP_DOT11_OTHER, SKIP_DOT11_NULL, SKIP_DOT11_PROTECTED,
    SKIP_DOT11_NON_SNAP, SKIP_MPLS_NON_IP, SKIP_PPPOE_NON_IP,
    SKIP_ETHERTYPE = 0x10000, /* | the EtherType: "ethertype-0x%04x" */
    SKIP_DOT11_MGMT = 0x20000 /* | the subtype: "dot11-mgmt-%d" */
};
static const char *const SKIP_NAMES[] = {
    NULL, "arp", "dot11-ctrl", "dot11-other", "dot11-null", "dot11-protected", "dot11-non-snap",
    "mpls-non-ip", "pppoe-non-ip",
};

static inline int be16(const uint8_t *p) { return p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p) { return rd32(p, 1); }
static inline uint32_t le32(const uint8_t *p) { return rd32(p, 0); }

static inline void skip(Row *r, int kind) {
    r->ok = ROW_SKIP;
    r->kind = kind;
}

/* The encapsulations taken off, by the names `Tunnel.kind` gives them (`TUNNEL_NAMES`). */
enum { TUN_GRE = 1, TUN_ERSPAN_I, TUN_ERSPAN_II, TUN_ERSPAN_III, TUN_VXLAN, TUN_GENEVE, TUN_MPLS,
       TUN_PPPOE, TUN_KINDS };
static const char *const TUNNEL_NAMES[TUN_KINDS] = {
    NULL, "gre", "erspan_i", "erspan_ii", "erspan_iii", "vxlan", "geneve", "mpls", "pppoe",
};

/* What the decoder and the engine decide of IP protocols, given by `protocols_setup` (until then
 * every packet goes to the decoder): ICMP (`icmp_pair[0]`) and ICMPv6 (`[1]`) message types by
 * their counterpart's (-1: none), as `dronewatch.core.community_id` pairs them; the IPv6 next
 * headers the decoder reads past or reassembles (`ip6_skipped`: extension headers, fragments,
 * AH), whose packets go to it. */
static int icmp_pair[2][256];
static uint8_t ip6_skipped[256];
static int protocols_ready;

/* The packet is taken out of an encapsulation of kind `kind`, identified by `ident` (-1: none):
 * note the outermost one (its outer addresses `alen` bytes each from `addr_at`), and forget what
 * the outer headers set that the inner ones may not: the VLAN tag, and with an outer IP header
 * (`alen` > 0) the MACs (`Decoder._enter`). */
static void enter(Row *r, int kind, long long ident, long long addr_at, int alen) {
    if (!r->tun_kind) {
        r->tun_kind = kind;
        r->tun_ident = ident;
        r->tun_vlan = r->vlan;
        r->tun_addr_at = addr_at;
        r->tun_alen = alen;
    }
    r->vlan = -1;
    if (alen) r->dst_mac_at = r->src_mac_at = -1;
}

static void ethertype(const uint8_t *fr, long long cap, long long off, int etype, int depth, Row *r);
static void ip_packet(const uint8_t *fr, long long cap, long long l3, int depth, Row *r);
static void dot11(const uint8_t *fr, long long base, long long cap, int depth, Row *r);

/* An LLC/SNAP header with an EtherType after it (RFC 1042: IP over IEEE 802 networks). */
static const uint8_t LLC_SNAP[6] = {0xAA, 0xAA, 0x03, 0x00, 0x00, 0x00};

static void ethernet(const uint8_t *fr, long long cap, long long off, int depth, Row *r) {
    if (cap < off + 14) return;
    r->dst_mac_at = off, r->src_mac_at = off + 6;
    int etype = be16(fr + off + 12);
    if (etype <= 1500 && cap >= off + 20 && memcmp(fr + off + 14, LLC_SNAP, 6) == 0) {
        if (cap < off + 22) return; /* IEEE 802.3 length, then LLC/SNAP and the EtherType */
        ethertype(fr, cap, off + 22, be16(fr + off + 20), depth, r);
        return;
    }
    ethertype(fr, cap, off + 14, etype, depth, r);
}

/* An MPLS label stack (RFC 3032), then IP by its first nibble: no field says what it carries. */
static void mpls(const uint8_t *fr, long long cap, long long off, int depth, Row *r) {
    uint32_t entry;
    do {
        if (cap < off + 4) return;
        entry = be32(fr + off);
        off += 4;
    } while (!(entry & 0x100));
    if (cap < off + 1) return;
    int version = fr[off] >> 4;
    if (version != 4 && version != 6) {
        skip(r, SKIP_MPLS_NON_IP);
        return;
    }
    enter(r, TUN_MPLS, entry >> 12, 0, 0); /* the bottom label, the service's */
    ip_packet(fr, cap, off, depth + 1, r);
}

/* A PPPoE session header (RFC 2516) and the PPP protocol, maybe compressed to one byte. */
static void pppoe(const uint8_t *fr, long long cap, long long off, int depth, Row *r) {
    if (cap < off + 4) return;
    if (fr[off] != 0x11 || fr[off + 1] != 0) {
        skip(r, SKIP_PPPOE_NON_IP);
        return;
    }
    if (cap < off + 7) return;
    int proto = fr[off + 6];
    long long at = off + 7;
    if (!(proto & 1)) {
        if (cap < off + 8) return;
        proto = be16(fr + off + 6);
        at = off + 8;
    }
    if (proto != 0x21 && proto != 0x57) {
        skip(r, SKIP_PPPOE_NON_IP);
        return;
    }
    enter(r, TUN_PPPOE, be16(fr + off + 2), 0, 0); /* the session id */
    ip_packet(fr, cap, at, depth + 1, r);
}

/* The built-in local IPv4 ranges (`dronewatch.geoip.local.GEOIP_LOCAL_V4`, given by
 * `protocols_setup`): an ARP request for an address in them shows nothing the on-link table
 * would take (`geoip.onlink.learn_host`), so it is only counted here. */
#define MAX_LOCAL4 32
static uint32_t local4_net[MAX_LOCAL4], local4_mask[MAX_LOCAL4];
static int nlocal4;

static int local4(uint32_t a) {
    for (int k = 0; k < nlocal4; k++)
        if ((a & local4_mask[k]) == local4_net[k]) return 1;
    return 0;
}

/* Whether an ARP message may show an address on the link that the on-link table takes: a
 * request for IPv4 over Ethernet (RFC 826: hardware 1, protocol 0x0800, lengths 6 and 4,
 * operation 1) whose sender address, or for a probe (RFC 5227, sender 0.0.0.0) whose target,
 * is not local already. The decoder reads those (`Decoder._arp`); the others are counted. */
static int arp_shows_public(const uint8_t *fr, long long cap, long long off) {
    static const uint8_t request[8] = {0, 1, 8, 0, 6, 4, 0, 1};
    if (cap < off + 28 || memcmp(fr + off, request, 8) != 0) return 0;
    uint32_t a = be32(fr + off + 14);
    if (a == 0) a = be32(fr + off + 24);
    return !local4(a);
}

static void ethertype(const uint8_t *fr, long long cap, long long off, int etype, int depth,
                      Row *r) {
    while (etype == 0x8100 || etype == 0x88A8 || etype == 0x9100) { /* 802.1Q, QinQ */
        if (cap < off + 4) return;
        if (r->vlan < 0) r->vlan = be16(fr + off) & 0x0FFF;
        etype = be16(fr + off + 2);
        off += 4;
    }
    if (etype == ETH_IP || etype == ETH_IP6) ip_packet(fr, cap, off, depth, r);
    else if (depth < MAX_ENCAPSULATIONS && (etype == ETH_MPLS || etype == ETH_MPLS_MC))
        mpls(fr, cap, off, depth, r);
    else if (depth < MAX_ENCAPSULATIONS && etype == ETH_PPPOE) pppoe(fr, cap, off, depth, r);
    else if (etype == ETH_ARP) {
        if (arp_shows_public(fr, cap, off)) r->ok = ROW_PYTHON;
        else skip(r, SKIP_ARP);
    } else skip(r, SKIP_ETHERTYPE | etype);
}

/* What an encapsulation header says of the packet inside: where it starts (`at`), what it is
 * (`inner`: an EtherType, ETH_TEB for an Ethernet frame, INNER_IP for an IP packet), and what
 * `Tunnel` keeps of the header: its kind (`TUN_*`), identifier (-1: none) and the original VLAN an
 * ERSPAN header names (0: none). */
typedef struct {
    long long at, ident;
    int inner, kind, vlan;
} Inner;

/* The packet inside a GRE header at `at`, when the headers lie before `stop`: plain GRE (RFC
 * 2784/2890) of IP, MPLS, Ethernet or 802.11 (Aruba's types, `encap.is_aruba_wlan`; its key,
 * when present), ERSPAN type I (its GRE key), II or III (the session id). 0 for any other GRE
 * packet, which is then the packet itself. */
static int gre(const uint8_t *fr, long long at, long long stop, Inner *in) {
    if (at + 4 > stop) return 0;
    int flags = be16(fr + at), ptype = be16(fr + at + 2);
    if (flags & 0x4007) return 0; /* routing present, or a version other than 0 */
    long long key_at = at + (flags & 0x8000 ? 8 : 4); /* after the checksum */
    long long end = key_at + (flags & 0x2000 ? 4 : 0) + (flags & 0x1000 ? 4 : 0); /* key, seq */
    if (end > stop) return 0;
    in->ident = flags & 0x2000 ? (long long)be32(fr + key_at) : -1;
    in->vlan = 0;
    if (ptype == ETH_IP || ptype == ETH_IP6 || ptype == ETH_TEB || ptype == ETH_MPLS ||
        ptype == ETH_MPLS_MC) {
        in->at = end, in->inner = ptype, in->kind = TUN_GRE;
        return 1;
    }
    if (ptype == 0x9000 || (ptype >= 0x8200 && ptype <= 0x8370 && !(ptype & 0xF))) {
        in->at = end, in->inner = INNER_DOT11, in->kind = TUN_GRE;
        return 1;
    }
    if (ptype == ETH_ERSPAN) {
        if (!(flags & 0x1000)) { /* type I: no ERSPAN header */
            in->at = end, in->inner = ETH_TEB, in->kind = TUN_ERSPAN_I;
            return 1;
        }
        if (end + 8 > stop || fr[end] >> 4 != 1) return 0; /* type II header, version 1 */
        in->at = end + 8, in->inner = ETH_TEB, in->kind = TUN_ERSPAN_II;
        in->ident = be16(fr + end + 2) & 0x3FF, in->vlan = be16(fr + end) & 0xFFF;
        return 1;
    }
    if (ptype == ETH_ERSPAN_III) {
        if (end + 12 > stop) return 0;
        int last = be16(fr + end + 10); /* P, frame type, hardware id, D, Gra, O */
        int frame_type = (last >> 10) & 0x1F;
        long long len = last & 1 ? 20 : 12; /* O: a platform-specific subheader follows */
        if (fr[end] >> 4 != 2 || end + len > stop) return 0;
        if (frame_type != 0 && frame_type != 2) return 0;
        in->at = end + len, in->inner = frame_type == 0 ? ETH_TEB : INNER_IP;
        in->kind = TUN_ERSPAN_III;
        in->ident = be16(fr + end + 2) & 0x3FF, in->vlan = be16(fr + end) & 0xFFF;
        return 1;
    }
    return 0;
}

/* The same for a VXLAN (RFC 7348) or Geneve (RFC 8926) header at `at`, a datagram to `dport`
 * (the VNI its identifier). */
static int udp_tunnel(const uint8_t *fr, long long at, long long stop, int dport, Inner *in) {
    if (at + 8 > stop) return 0;
    in->ident = be32(fr + at + 4) >> 8, in->vlan = 0;
    if (dport == UDP_VXLAN) {
        if (!(fr[at] & 0x08)) return 0; /* I: the VNI is valid */
        in->at = at + 8, in->inner = ETH_TEB, in->kind = TUN_VXLAN;
        return 1;
    }
    int first = fr[at], ptype = be16(fr + at + 2);
    long long end = at + 8 + (first & 0x3F) * 4; /* version 0, options in 4-byte words */
    if (first >> 6 || end > stop || (ptype != ETH_IP && ptype != ETH_IP6 && ptype != ETH_TEB))
        return 0;
    in->at = end, in->inner = ptype, in->kind = TUN_GENEVE;
    return 1;
}

/* ---- checksums -----------------------------------------------------------------------------
 * As `dronewatch.capture.checksum` decides (its docstring says why): a packet whose checksum is
 * wrong, or that cannot be taken as one left unfilled for the sender's card (mode auto), goes to
 * the per-packet decoder, which counts it and marks its flow. Only whole packets are checked. */
#define CK_IGNORE 0
#define CK_AUTO 1
#define CK_VERIFY 2

/* The sum of `n` bytes as big-endian 32-bit words (an odd tail padded with zeros), to be folded
 * by `fold`: 2**16 is 1 modulo 0xFFFF, so this is the 16-bit one's complement sum's residue. */
static uint64_t sum_words(const uint8_t *p, long long n, uint64_t acc) {
    while (n >= 4) {
        uint32_t w;
        memcpy(&w, p, 4);
        acc += __builtin_bswap32(w);
        p += 4;
        n -= 4;
    }
    if (n >= 2) acc += (uint32_t)(p[0] << 8 | p[1]), p += 2, n -= 2;
    if (n) acc += (uint32_t)p[0] << 8;
    return acc;
}

/* The one's complement sum (RFC 1071): 0 only for no bits set, else 1..0xFFFF. */
static unsigned fold(uint64_t acc) {
    while (acc >> 16) acc = (acc & 0xFFFF) + (acc >> 16);
    return (unsigned)acc;
}

/* Whether the IPv4 header at `l3` is taken as right. */
static int header_ok(const uint8_t *fr, long long l3, long long ihl, int mode) {
    if (fold(sum_words(fr + l3, ihl, 0)) == 0xFFFF) return 1;
    return mode == CK_AUTO && fr[l3 + 10] == 0 && fr[l3 + 11] == 0;
}

/* Whether the TCP (6) or UDP (17) message from `l4` to `end` is taken as right; `addrs`: its
 * source and destination addresses, `alen` bytes each. */
static int segment_ok(const uint8_t *fr, long long l4, long long end, const uint8_t *addrs,
                      int alen, int proto, int mode) {
    long long len = end - l4;
    unsigned field = be16(fr + l4 + (proto == 6 ? 16 : 6));
    if (proto == 17 && field == 0 && alen == 4) return 1; /* no checksum (RFC 768) */
    uint64_t pseudo = sum_words(addrs, 2 * alen, 0) + (uint64_t)proto;
    if (fold(sum_words(fr + l4, len, pseudo + (uint64_t)len)) == 0xFFFF) return 1;
    if (mode != CK_AUTO) return 0;
    return field == 0 || field == fold(pseudo + (uint64_t)len) || field == fold(pseudo);
}

/* The IP packet at `l3` (version from its first nibble), taken apart when it carries an
 * encapsulated one: then the row is the inner packet's. */
static void ip_packet(const uint8_t *fr, long long cap, long long l3, int depth, Row *r) {
    if (cap < l3 + 1) return;
    int version = fr[l3] >> 4, v4 = version == 4;
    if (!v4 && version != 6) return;
    if (cap < l3 + (v4 ? 20 : 40)) return;
    long long ihl = v4 ? (fr[l3] & 0x0F) * 4 : 40;
    int proto = v4 ? fr[l3 + 9] : fr[l3 + 6]; /* IPv6 extension headers: to the decoder */
    int frag = v4 ? be16(fr + l3 + 6) : 0;
    if (v4 && (ihl < 20 || (frag & 0x3FFF))) return; /* a fragment: reassembled by the decoder */
    long long ip_len;
    if (v4) {
        long long total = be16(fr + l3 + 2);
        ip_len = total >= ihl ? total : cap - l3; /* TSO captures may say 0 */
        if (r->checksums && l3 + ihl <= cap &&
            (!header_ok(fr, l3, ihl, r->checksums) || (total == 0 && r->checksums == CK_VERIFY)))
            return;
    } else {
        ip_len = (long long)be16(fr + l3 + 4) + 40;
    }
    long long l4 = l3 + ihl, end = l3 + ip_len;
    /* A whole packet (neither a fragment nor a first fragment) that carries another one. */
    if (!(frag & 0x2000) && depth < MAX_ENCAPSULATIONS && (proto == IP_GRE || proto == 17)) {
        long long stop = end < cap ? end : cap;
        Inner in;
        int found = 0;
        if (proto == IP_GRE) found = gre(fr, l4, stop, &in);
        else if (l4 + 8 <= stop) {
            int dport = be16(fr + l4 + 2);
            if (dport == UDP_VXLAN || dport == UDP_GENEVE)
                found = udp_tunnel(fr, l4 + 8, stop, dport, &in);
        }
        /* A tunnel's datagram whose UDP checksum is wrong (0: none computed, over IPv6 too, RFC
           6935) goes to the decoder, which decides (capture.checksum.tunnel_ok). */
        if (found && proto == 17 && r->checksums && end <= cap && be16(fr + l4 + 6) != 0 &&
            !segment_ok(fr, l4, end, fr + l3 + (v4 ? 12 : 8), v4 ? 4 : 16, 17, r->checksums))
            return;
        if (found) {
            enter(r, in.kind, in.ident, l3 + (v4 ? 12 : 8), v4 ? 4 : 16);
            if (in.vlan) r->vlan = in.vlan;
            if (in.inner == INNER_DOT11) dot11(fr, in.at, stop, depth + 1, r);
            else if (in.inner == ETH_TEB) ethernet(fr, cap, in.at, depth + 1, r);
            else if (in.inner == INNER_IP) ip_packet(fr, cap, in.at, depth + 1, r);
            else ethertype(fr, cap, in.at, in.inner, depth + 1, r);
            return;
        }
    }
    int tcp = proto == 6, icmp = proto == 1 || proto == 58;
    if (!tcp && proto != 17 && !protocols_ready) return;
    /* A protocol whose header the decoder does not read (ESP, VRRP, OSPF, IGMP, PIM, GRE that
       carries nothing taken off...): a flow of its addresses alone, ports 0, no payload. SCTP's
       ports and an IPv6 extension header are the decoder's to read. */
    int portless = !tcp && !icmp && proto != 17 && proto != 132 && (v4 || !ip6_skipped[proto]);
    if (icmp && r->checksums) return; /* its checksum: the decoder's to check */
    if (!tcp && !icmp && proto != 17 && !portless) return;
    if (!portless && cap < l4 + (tcp ? 14 : icmp ? 4 : 6)) return;
    const uint8_t *t = fr + l4;
    /* ICMP: the type and code stand in for the ports, as the decoder has them; the flow's key
       pairs a request's type with its reply's (`icmp_pair`), and a message without a
       counterpart is keyed in its own direction (`Engine.process`). */
    int sport = portless ? 0 : icmp ? t[0] : t[0] << 8 | t[1];
    int dport = portless ? 0 : icmp ? t[1] : t[2] << 8 | t[3];
    int key_dport = dport, ordered = 1;
    if (icmp) {
        int pair = icmp_pair[proto == 58][sport];
        if (pair >= 0) key_dport = pair;
        else ordered = 0;
    }
    r->icmp = icmp;
    r->sport = sport, r->dport = dport;
    int flags = tcp ? t[13] : 0;
    r->seq = tcp ? be32(t + 4) : 0;
    r->ack = tcp ? be32(t + 8) : 0;
    r->ip_len = ip_len;
    long long start = portless ? l4 : l4 + (tcp ? (t[12] >> 4) * 4 : icmp ? 4 : 8);
    if (end < start || portless) end = start;
    r->payload_len = end - start;
    r->payload_at = start;
    if (!portless && r->checksums && end <= cap && end - l4 >= (tcp ? 18 : 8) &&
        !segment_ok(fr, l4, end, fr + l3 + (v4 ? 12 : 8), v4 ? 4 : 16, proto, r->checksums))
        return;
    long long stop = end < cap ? end : cap;
    r->has_payload = stop > start;
    r->payload_stop = stop > start ? stop : start;
    uint8_t src[18] = {0}, dst[18] = {0};
    memcpy(src, fr + l3 + (v4 ? 12 : 8), v4 ? 4 : 16);
    memcpy(dst, fr + l3 + (v4 ? 16 : 24), v4 ? 4 : 16);
    src[16] = sport >> 8, src[17] = sport & 0xFF;
    dst[16] = key_dport >> 8, dst[17] = key_dport & 0xFF;
    int cmp = memcmp(src, dst, 18);
    r->same = cmp == 0;
    r->low = ordered ? cmp <= 0 : 1;
    r->key[0] = (uint8_t)version;
    r->key[1] = (uint8_t)proto;
    memcpy(r->key + 2, r->low ? src : dst, 18);
    memcpy(r->key + 20, r->low ? dst : src, 18);
    r->tcp = tcp;
    r->flags = flags;
    r->control = tcp && (flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0;
    /* The history letter the row may add: data (D/d), else an ACK (A/a); a UDP datagram's is D/d;
       an ICMP message, or a protocol without ports, adds none. */
    r->letter = tcp ? (r->payload_len > 0 ? 1 : ((flags & TCP_ACK) ? 2 : 0)) : proto == 17;
    r->ok = ROW_IP;
}

/* An 802.11 frame from `base` to `cap`: a data frame's LLC/SNAP header leads to its EtherType;
 * control frames, null-function and protected (encrypted, unreadable) data and data without
 * LLC/SNAP are counted; management frames (beacons...) go to the decoder and its analyzers; an
 * A-MSDU, which carries several packets, is a `ROW_AMSDU` (its subframes: `msdu`). */
static void dot11(const uint8_t *fr, long long base, long long cap, int depth, Row *r) {
    static const uint8_t SNAP[6] = {0xAA, 0xAA, 0x03, 0x00, 0x00, 0x00};
    long long len = cap - base;
    if (len < 2) return;
    int fc0 = fr[base], fc1 = fr[base + 1], type = (fc0 >> 2) & 3, subtype = fc0 >> 4;
    if (type == 0) {
        if (len >= 24) { /* shorter: the decoder's malformed count */
            r->ok = ROW_MGMT;
            r->kind = SKIP_DOT11_MGMT | subtype;
            r->mgmt_at = base;
            r->mgmt_len = len;
        }
        return;
    }
    if (type != 2) {
        skip(r, type == 1 ? SKIP_DOT11_CTRL : SKIP_DOT11_OTHER);
        return;
    }
    long long hdr = (fc1 & 1) && (fc1 & 2) ? 30 : 24; /* four addresses: to and from DS */
    /* Addresses 1, 2, 3 at 4, 10, 16: the station's are those of the frame's direction. */
    int to_ds = fc1 & 1, from_ds = fc1 & 2;
    r->dst_mac_at = base + (to_ds && !from_ds ? 16 : 4);
    r->src_mac_at = base + (from_ds && !to_ds ? 16 : 10);
    /* QoS control (its A-MSDU Present bit), and +HTC */
    int amsdu = (subtype & 0x8) && len > hdr && (fr[base + hdr] & 0x80);
    if (subtype & 0x8) hdr += (fc1 & 0x80) ? 6 : 2;
    if (subtype & 0x4) skip(r, SKIP_DOT11_NULL);
    else if (fc1 & 0x40) {
        skip(r, SKIP_DOT11_PROTECTED);
        if (r->src_mac_at + 6 > cap) r->src_mac_at = -1; /* cut off: the decoder's to count */
    } else if (amsdu) {
        r->ok = ROW_AMSDU;
        r->amsdu_at = base + hdr, r->amsdu_end = cap, r->amsdu_depth = depth;
    } else if (len < hdr + 6 || memcmp(fr + base + hdr, SNAP, 6) != 0) skip(r, SKIP_DOT11_NON_SNAP);
    else if (len >= hdr + 8)
        ethertype(fr, cap, base + hdr + 8, be16(fr + base + hdr + 6), depth, r);
}

/* A radiotap header (radiotap.org): its length, and the Flags field for a trailing FCS. The
 * fields the decoder reads (flags, channel, antenna signal) must lie in the frame. */
static void radiotap(const uint8_t *fr, long long cap, Row *r) {
    static const int align[5] = {8, 1, 1, 2, 1}, size[5] = {8, 1, 1, 4, 2};
    if (cap < 8) return;
    long long rlen = fr[2] | fr[3] << 8, off = 8;
    uint32_t present = le32(fr + 4), word = present;
    while (word & 0x80000000u) { /* extended presence bitmaps */
        if (cap < off + 4) return;
        word = le32(fr + off);
        off += 4;
    }
    int flags = 0;
    for (int bit = 0; bit < 5; bit++) { /* TSFT, Flags, Rate, Channel, FHSS */
        if (!(present & (1u << bit))) continue;
        off = (off + align[bit] - 1) & ~(long long)(align[bit] - 1);
        if (bit == 1) {
            if (off >= cap) return;
            flags = fr[off];
        } else if (bit == 3 && off + 2 > cap) {
            return;
        }
        off += size[bit];
    }
    if ((present & (1u << 5)) && off + 1 > cap) return; /* antenna signal */
    long long base = rlen < cap ? rlen : cap, end = cap;
    if (flags & 0x10) end = end - base >= 4 ? end - 4 : base; /* the frame ends with its FCS */
    dot11(fr, base, end, 0, r);
}

/* The subframe at `at` of an A-MSDU that ends at `end` (IEEE 802.11-2020 9.3.2.2.2: destination,
 * source, length, the MSDU, each but the last padded to a multiple of 4 bytes), read into `r` (a
 * copy of its frame's row, which keeps the frame's tunnel) as the decoder reads it
 * (`Decoder._amsdu`): the subframe's addresses are the packet's MACs, then LLC/SNAP and what its
 * EtherType says, the MSDU's end the packet's. Returns where the next subframe starts, or -1 when
 * this one is cut off (by the snap length: the decoder's to read). */
static long long msdu(const uint8_t *fr, long long at, long long end, int depth, Row *r) {
    static const uint8_t SNAP[6] = {0xAA, 0xAA, 0x03, 0x00, 0x00, 0x00};
    int length = be16(fr + at + 12);
    long long body = at + 14, stop = body + length;
    if (stop > end) return -1;
    r->ok = ROW_PYTHON;
    r->dst_mac_at = at, r->src_mac_at = at + 6;
    r->vlan = -1;
    if (length >= 8 && memcmp(fr + body, SNAP, 6) == 0)
        ethertype(fr, stop, body + 8, be16(fr + body + 6), depth, r);
    return stop + (4 - (14 + length) % 4) % 4;
}

/* How many packets the A-MSDU row `r` carries when the walk can read every one of them (each
 * subframe whole and an IP packet it reads, `ROW_IP`); 0 when it cannot, and the frame goes to
 * the decoder (a subframe that is not IP, cut off, or one the walk hands over). */
static int amsdu_parts(const uint8_t *fr, const Row *r) {
    int parts = 0;
    for (long long at = r->amsdu_at; at + 14 <= r->amsdu_end; parts++) {
        Row sub = *r;
        at = msdu(fr, at, r->amsdu_end, r->amsdu_depth, &sub);
        if (at < 0 || sub.ok != ROW_IP) return 0;
    }
    return parts;
}

/* The headers of one frame of link type `lt`. */
static void parse(const uint8_t *fr, long long cap, int lt, Row *r) {
    r->ok = ROW_PYTHON;
    r->dst_mac_at = r->src_mac_at = -1;
    r->vlan = -1;
    r->tun_kind = 0;
    switch (lt) {
    case LT_ETHERNET:
        ethernet(fr, cap, 0, 0, r);
        break;
    case LT_RAW:
    case LT_RAW_14:
    case LT_RAW_OPENBSD:
    case LT_IPV4:
    case LT_IPV6:
        ip_packet(fr, cap, 0, 0, r);
        break;
    case LT_LINUX_SLL: /* packet type, ARPHRD, address length, 8-byte address, protocol */
        if (cap < 16) break;
        if (be16(fr + 2) == 1 && be16(fr + 4) == 6) r->src_mac_at = 6; /* an Ethernet sender */
        ethertype(fr, cap, 16, be16(fr + 14), 0, r);
        break;
    case LT_LINUX_SLL2: /* protocol, reserved, ifindex, ARPHRD, type, address length, address */
        if (cap < 20) break;
        if (be16(fr + 8) == 1 && fr[11] == 6) r->src_mac_at = 12;
        ethertype(fr, cap, 20, be16(fr), 0, r);
        break;
    case LT_NULL:
    case LT_LOOP: { /* the address family: DLT_NULL in the capturing host's byte order */
        if (cap < 4) break;
        uint32_t family = lt == LT_LOOP ? be32(fr) : le32(fr);
        if (family > 0xFFFF && lt == LT_NULL) family = be32(fr);
        if (family == 2 || family == 10 || family == 24 || family == 28 || family == 30)
            ip_packet(fr, cap, 4, 0, r);
        break; /* other families: the decoder counts them */
    }
    case LT_IEEE802_11_RADIOTAP:
        radiotap(fr, cap, r);
        break;
    case LT_IEEE802_11:
        dot11(fr, 0, cap, 0, r);
        break;
    }
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
    int has_tcp;   /* `tcp` holds the flow's TCP state (written here in place) */
    int has_stream; /* the flow's byte streams are reassembled (`Flow.stream`) */
    Py_buffer tcp;
} Entry;

#define MAX_SKIPPED 32 /* kinds of frames that are not IP counted in one walk; more go to Python */
#define MAX_ENCRYPTED 64 /* senders of protected 802.11 data counted in one walk; more: Python */

typedef struct {
    Entry *slots;
    size_t cap, used;
    size_t *occupied; /* the indices of the `used` slots in use, so a clear touches only those */
    Entry **dirty;
    size_t ndirty;
    long long counted; /* rows counted here, reported at the end of the walk */
    long long frames_counted; /* of them, 802.11 management frames (engine packets, not IP) */
    double latest;     /* the latest time of those rows and of the rows of other processes */
    int has_latest;
    long long limit;
    double active_s;
    double linger_s; /* EngineOptions.close_linger_s: an unanswered attempt ends this after its SYN */
    PyObject *lookup, *counted_cb, *skipped_cb, *timers_cb;
    struct {
        int kind; /* Row.kind */
        long long n;
    } skipped[MAX_SKIPPED]; /* frames that are not IP counted here, by kind */
    int nskipped;
    struct {
        uint8_t mac[6];
        long long n;
    } encrypted[MAX_ENCRYPTED]; /* protected 802.11 data frames counted here, by sender */
    int nencrypted;
} Table;

static int table_init(Table *t, size_t cap) {
    t->slots = PyMem_Calloc(cap, sizeof(Entry));
    t->dirty = PyMem_Malloc(cap * sizeof(Entry *));
    t->occupied = PyMem_Malloc(cap * sizeof(size_t));
    if (t->slots == NULL || t->dirty == NULL || t->occupied == NULL) {
        PyMem_Free(t->slots);
        PyMem_Free(t->dirty);
        PyMem_Free(t->occupied);
        t->slots = NULL;
        t->dirty = NULL;
        t->occupied = NULL;
        PyErr_NoMemory();
        return -1;
    }
    t->cap = cap;
    t->used = 0;
    t->ndirty = 0;
    return 0;
}

/* Drop every entry (and its references), touching only the slots in use: a flood of flows
 * ending one sweep at a time clears a table of a few live entries thousands of times. */
static void table_clear(Table *t) {
    for (size_t k = 0; k < t->used; k++) {
        Entry *e = &t->slots[t->occupied[k]];
        Py_CLEAR(e->flow);
        Py_CLEAR(e->counters);
        if (e->has_tcp) PyBuffer_Release(&e->tcp);
        memset(e, 0, sizeof(Entry));
    }
    t->used = 0;
    t->ndirty = 0;
}

static void table_free(Table *t) {
    if (t->slots == NULL) return;
    table_clear(t);
    PyMem_Free(t->slots);
    PyMem_Free(t->dirty);
    PyMem_Free(t->occupied);
    t->slots = NULL;
}

/* CRC-32 (ISO-HDLC, as zlib's crc32) of a key: which process of a shared capture makes its flow
 * (`dronewatch.core.engine.owner`). Every process computes it for every row of the capture, so
 * eight bytes a step (table k: the CRC of a byte followed by k zero bytes), not one. */
static uint32_t CRC_TABLE[8][256];

static void crc_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        CRC_TABLE[0][n] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int n = 0; n < 256; n++) {
            uint32_t c = CRC_TABLE[k - 1][n];
            CRC_TABLE[k][n] = (c >> 8) ^ CRC_TABLE[0][c & 0xFF];
        }
}

static uint32_t key_crc(const uint8_t *k) {
    uint32_t c = 0xFFFFFFFFu;
    int i = 0;
    for (; i + 8 <= KEY_LEN; i += 8) {
        uint32_t lo = le32(k + i) ^ c, hi = le32(k + i + 4);
        c = CRC_TABLE[7][lo & 0xFF] ^ CRC_TABLE[6][(lo >> 8) & 0xFF] ^
            CRC_TABLE[5][(lo >> 16) & 0xFF] ^ CRC_TABLE[4][lo >> 24] ^ CRC_TABLE[3][hi & 0xFF] ^
            CRC_TABLE[2][(hi >> 8) & 0xFF] ^ CRC_TABLE[1][(hi >> 16) & 0xFF] ^
            CRC_TABLE[0][hi >> 24];
    }
    for (; i < KEY_LEN; i++) c = CRC_TABLE[0][(c ^ k[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The flow table's hash of a key (this process's only): eight bytes a step. */
static uint64_t key_hash(const uint8_t *k) {
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i + 8 <= KEY_LEN; i += 8) {
        uint64_t w;
        memcpy(&w, k + i, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    memcpy(&tail, k + KEY_LEN - KEY_LEN % 8, KEY_LEN % 8);
    h = (h ^ tail) * 0xC4CEB9FE1A85EC53ULL;
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

/* Count a frame that is not IP of a kind the decoder would only count; 0 when no room is left
 * for a new kind (the frame then goes to the decoder). */
static int count_skipped(Table *t, int kind) {
    for (int k = 0; k < t->nskipped; k++) {
        if (t->skipped[k].kind == kind) {
            t->skipped[k].n++;
            return 1;
        }
    }
    if (t->nskipped == MAX_SKIPPED) return 0;
    t->skipped[t->nskipped].kind = kind;
    t->skipped[t->nskipped++].n = 1;
    return 1;
}

/* Count a protected 802.11 data frame (`SKIP_DOT11_PROTECTED`) whose sender's MAC is `mac` (at
 * `mac_at` in a frame of `cap` bytes), under its kind and its sender (`DecodeStats.encrypted`);
 * 0 when it cannot be counted here (no room for a new kind or sender, or the address cut off),
 * and the frame goes to the decoder, which counts both. */
static int count_encrypted(Table *t, int kind, const uint8_t *fr, long long mac_at, long long cap) {
    if (mac_at < 0 || mac_at + 6 > cap) return 0;
    const uint8_t *mac = fr + mac_at;
    int k = 0;
    while (k < t->nencrypted && memcmp(t->encrypted[k].mac, mac, 6) != 0) k++;
    if (k == MAX_ENCRYPTED || !count_skipped(t, kind)) return 0;
    if (k == t->nencrypted) {
        memcpy(t->encrypted[k].mac, mac, 6);
        t->encrypted[k].n = 0;
        t->nencrypted++;
    }
    t->encrypted[k].n++;
    return 1;
}

/* Hand the counts of frames that are not IP to Python, as {kind name: frames}, and those of
 * protected 802.11 data as {sender's MAC: frames}. */
static int report_skipped(Table *t) {
    if (!t->nskipped) return 0;
    PyObject *counts = PyDict_New();
    if (counts == NULL) return -1;
    for (int k = 0; k < t->nskipped; k++) {
        int kind = t->skipped[k].kind;
        char name[24];
        if (kind & SKIP_ETHERTYPE) snprintf(name, sizeof name, "ethertype-0x%04x", kind & 0xFFFF);
        else if (kind & SKIP_DOT11_MGMT) snprintf(name, sizeof name, "dot11-mgmt-%d", kind & 0xF);
        else snprintf(name, sizeof name, "%s", SKIP_NAMES[kind]);
        PyObject *n = PyLong_FromLongLong(t->skipped[k].n);
        if (n == NULL || PyDict_SetItemString(counts, name, n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(counts);
            return -1;
        }
        Py_DECREF(n);
    }
    t->nskipped = 0;
    PyObject *senders = PyDict_New();
    if (senders == NULL) {
        Py_DECREF(counts);
        return -1;
    }
    for (int k = 0; k < t->nencrypted; k++) {
        PyObject *mac = PyBytes_FromStringAndSize((const char *)t->encrypted[k].mac, 6);
        PyObject *n = PyLong_FromLongLong(t->encrypted[k].n);
        int rc = mac == NULL || n == NULL ? -1 : PyDict_SetItem(senders, mac, n);
        Py_XDECREF(mac);
        Py_XDECREF(n);
        if (rc < 0) {
            Py_DECREF(counts);
            Py_DECREF(senders);
            return -1;
        }
    }
    t->nencrypted = 0;
    PyObject *r = PyObject_CallFunctionObjArgs(t->skipped_cb, counts, senders, NULL);
    Py_DECREF(counts);
    Py_DECREF(senders);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* Tell the engine how many packets were counted here (once, at the end of the walk: only the
 * totals read it), and the decoder the frames that are not IP counted here. */
static int report(Table *t) {
    if (report_skipped(t) < 0) return -1;
    if (!t->counted && !t->has_latest) return 0;
    PyObject *r =
        PyObject_CallFunction(t->counted_cb, "LdL", t->counted, t->latest, t->frames_counted);
    t->counted = 0;
    t->frames_counted = 0;
    t->has_latest = 0;
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

static int table_grow(Table *t) {
    if (flush(t) < 0) return -1;
    Entry *old = t->slots;
    size_t old_cap = t->cap, old_used = t->used, *old_occupied = t->occupied;
    PyMem_Free(t->dirty);
    if (table_init(t, old_cap * 2) < 0) {
        /* keep the old table so it is freed with its references */
        t->slots = old;
        t->cap = old_cap;
        t->used = old_used;
        t->occupied = old_occupied;
        t->dirty = PyMem_Malloc(old_cap * sizeof(Entry *));
        return -1;
    }
    for (size_t k = 0; k < old_used; k++) {
        Entry *o = &old[old_occupied[k]];
        size_t j = o->hash & (t->cap - 1);
        while (t->slots[j].used) j = (j + 1) & (t->cap - 1);
        t->slots[j] = *o;
        t->occupied[t->used++] = j;
    }
    PyMem_Free(old);
    PyMem_Free(old_occupied);
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
    t->occupied[t->used++] = j;
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
    }
    PyObject *f = e->flow;
    /* Is the originator the key's lower end? (Read each time: the engine may flip a flow.) */
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
    if (e->has_tcp) {
        PyBuffer_Release(&e->tcp);
        e->has_tcp = 0;
    }
    PyObject *state = PyObject_GetAttr(f, s_tcp);
    if (state == NULL) return -1;
    if (state != Py_None) {
        int rc = PyObject_GetBuffer(state, &e->tcp, PyBUF_WRITABLE);
        Py_DECREF(state);
        if (rc < 0) return -1;
        if (e->tcp.len < (Py_ssize_t)(T_SIZE * sizeof(int64_t))) {
            PyBuffer_Release(&e->tcp);
            PyErr_SetString(PyExc_ValueError, "walk: Flow.tcp is too short");
            return -1;
        }
        e->has_tcp = 1;
    } else {
        Py_DECREF(state);
    }
    PyObject *stream = PyObject_GetAttr(f, s_stream);
    if (stream == NULL) return -1;
    e->has_stream = stream != Py_None;
    Py_DECREF(stream);
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

/* Zeek's established_or_cleanly_closing (`dronewatch.core.tcp.clean`). */
static int tcp_clean(const int64_t *T) {
    for (int e = 0; e <= T_BLOCK; e += T_BLOCK) {
        int64_t st = T[e + T_STATE];
        if (st != S_ESTABLISHED && !(st == S_CLOSED && T[e + T_PREV] == S_ESTABLISHED)) return 0;
    }
    return 1;
}

/* Whether `n` is 1, 10, 100...: the count of an event that writes its letter. */
static int tcp_scaled(int64_t n) {
    while (n >= 10 && n % 10 == 0) n /= 10;
    return n == 1;
}

/* Whether an ACK may write a gap letter in the peer's content (block `q`, as
 * `dronewatch.core.tcp._acked` finds gaps): -1 when it may (or a held range or a FIN makes it
 * worth the whole state machine's look: `tcp_state_path`), else 0. */
static int tcp_gap_ack(const int64_t *T, int q, uint32_t ack) {
    if (!(T[q + T_FLAGS] & F_ACTIVE)) return 0; /* the peer is numbered from this ACK */
    int64_t upto = T[q + T_AREL] + (int32_t)(ack - (uint32_t)T[q + T_ACK]);
    if (upto <= T[q + T_SEEN]) return 0;
    if (T[q + T_FIN_CNT] || T[q + T_HELD]) return -1;
    if (upto <= 2 && (T[T_MASK] & M_PARTIAL)) return 0;
    int report = !(T[q + T_FLAGS] & F_SKIP) && tcp_clean(T);
    if (report && tcp_scaled(T[q + T_GAPS] + 1)) return -1;
    return 0;
}

/* Whether the engine has a timer of the connection due at `now`, which it acts on at the
 * flow's next packet: an attempt nobody answered ends at its first packet past the linger after
 * its SYN (`T_SYN_TS`), a closed connection at its close timer (`T_DUE`, which the engine
 * writes: `Engine.tcp_timers`). */
static int tcp_timer_due(const int64_t *T, double now, double linger_s) {
    if (T[T_SYN_TS] && (T[T_STATE] == S_SYN_SENT || T[T_STATE] == S_SYN_ACK_SENT) &&
        T[T_BLOCK + T_STATE] == S_INACTIVE) {
        double syn_ts;
        memcpy(&syn_ts, &T[T_SYN_TS], sizeof syn_ts);
        if (now >= syn_ts + linger_s) return 1;
    }
    if (T[T_DUE]) {
        double due;
        memcpy(&due, &T[T_DUE], sizeof due);
        if (now >= due) return 1;
    }
    return 0;
}

/* Whether a TCP segment without SYN, FIN or RST may be counted here: the connection is settled
 * (`T_FAST`), its sender has sent before, it is not the retransmission that writes a `T`, its
 * bytes do not meet data held above a hole, and its ACK writes no gap letter. */
static int tcp_countable(const Entry *e, const Row *r, int from_orig, double now, double linger_s) {
    if (!e->has_tcp) return 0;
    int64_t *T = e->tcp.buf;
    int s = from_orig ? 0 : T_BLOCK;
    if (!T[T_FAST] || !(T[s + T_FLAGS] & F_SEEN)) return 0;
    if (tcp_timer_due(T, now, linger_s)) return 0;
    if (r->payload_len > 0) {
        int32_t d = (int32_t)(r->seq + (uint32_t)r->payload_len - (uint32_t)T[s + T_LAST]);
        if (d <= 0 && tcp_scaled(T[s + T_RXMIT] + 1)) return 0;
        if (!(T[s + T_FLAGS] & F_SKIP)) {
            int64_t rel = T[s + T_LREL] + (int32_t)(r->seq - (uint32_t)T[s + T_LAST]);
            if (T[s + T_HELD] || (rel >= 0 && rel > T[s + T_SEEN])) return 0; /* a hole */
        }
    }
    if ((r->flags & TCP_ACK) && tcp_gap_ack(T, T_BLOCK - s, r->ack) < 0) return 0;
    return 1;
}

/* Whether a countable segment of a flow whose one reader (its follower, or while it is inspected
 * its one inspector) reads its byte stream is one the stream layer passes over
 * (`dronewatch.core.stream`, `T_SKIP`): every byte of it below its direction's mark, its
 * sender's content still followed for gaps (`T_SEEN` says how far the layer may pass over), and
 * its ACK gives up no hole of the peer's stream that the layer has not given up already
 * (`T_ACKED`: the engine hands `StreamReaders.acked` each payload segment). */
static int tcp_acks_no_hole(const int64_t *T, const Row *r, int from_orig);

static int tcp_passed_over(const Entry *e, const Row *r, int from_orig) {
    if (!e->has_tcp || e->followers > 1) return 0;
    const int64_t *T = e->tcp.buf;
    int k = from_orig ? 0 : 1, s = from_orig ? 0 : T_BLOCK;
    int64_t mark = T[T_SKIP + k];
    if (!mark || (T[s + T_FLAGS] & F_SKIP)) return 0;
    int64_t rel = T[s + T_LREL] + (int32_t)(r->seq - (uint32_t)T[s + T_LAST]);
    if (rel + r->payload_len > mark) return 0;
    return tcp_acks_no_hole(T, r, from_orig);
}

/* Whether a segment's ACK gives up no hole of the peer's stream that the stream layer has not
 * given up already (`T_ACKED`: the engine hands `StreamReaders.acked` each payload segment). */
static int tcp_acks_no_hole(const int64_t *T, const Row *r, int from_orig) {
    int k = from_orig ? 0 : 1, q = from_orig ? T_BLOCK : 0;
    if ((r->flags & TCP_ACK) && (T[q + T_FLAGS] & F_ACTIVE)) {
        int64_t upto = T[q + T_AREL];
        int32_t d = (int32_t)(r->ack - (uint32_t)T[q + T_ACK]);
        if (d > 0 && upto + d >= 0 && !(r->ack == 0 && d > TOO_LARGE_SEQ_DELTA)) upto += d;
        if (upto > T[T_ACKED + (1 - k)]) return 0;
    }
    return 1;
}

/* Whether a countable segment of a followed flow was taken by its one follower's frame counter
 * (an MQTT flow's: `T_FEED`): all of its bytes captured, starting where the stream layer stands
 * with nothing held, its ACK giving up no hole, and the counter counted its packets (it refuses
 * whatever its analyzer is to read). The mark then moves past it. */
static int tcp_fed(Entry *e, const Row *r, const uint8_t *payload, Py_ssize_t captured,
                   int from_orig) {
    if (!e->has_tcp || e->followers != 1 || e->counters == NULL) return 0;
    if (r->payload_len <= 0 || captured != r->payload_len) return 0;
    int64_t *T = e->tcp.buf;
    int k = from_orig ? 0 : 1, s = from_orig ? 0 : T_BLOCK;
    int64_t at = T[T_FEED + k];
    if (!at || T[s + T_LREL] + (int32_t)(r->seq - (uint32_t)T[s + T_LAST]) != at) return 0;
    if (!tcp_acks_no_hole(T, r, from_orig)) return 0;
    dw_FrameCounter *c = (dw_FrameCounter *)PyTuple_GET_ITEM(e->counters, 0);
    if (c->feed(c, payload, captured, from_orig) < 0) return 0;
    T[T_FEED + k] = at + r->payload_len;
    return 1;
}

/* A counted segment's sequence numbers, acknowledgements and content gaps, written by the TCP
 * state machine itself (`_tcp.c`, the engine's): `tcp_countable` found that it writes no letter,
 * raises no event and turns nothing round, so the history stays as it is and the flow's last
 * packet time is the caller's to move (it is not closed). */
static void tcp_count(Entry *e, const Row *r, int from_orig, double now) {
    char none[DW_HISTORY_ROOM];
    Py_ssize_t len = 0;
    double last = now;
    int flipped;
    dw_tcp_segment(e->tcp.buf, from_orig, r->flags, r->seq, r->ack, r->payload_len, now, &last,
                   none, &len, &flipped);
}

/* A TCP segment that the counting above leaves (a SYN, FIN or RST; the first bare ACK of an end,
 * which writes its letter; an ACK that writes a gap letter; any segment of a closed connection;
 * the data of a flow nobody reads any more that retransmits or meets a hole), accounted here by the TCP state machine (`_tcp.c`, as the engine runs it:
 * `Engine._tcp`) when that changes nothing the engine must do itself: the flow's timers are not
 * due (`tcp_timer_due`), the segment starts no new connection on the 5-tuple
 * (`dw_tcp_reuse`), it gives up no hole of a reassembled stream (a SYN, FIN or RST's ACK is
 * the stream layer's: `tcp_acks_no_hole`), and it does not turn the flow round (the state
 * machine runs on a copy, kept only then). The history and last packet time are written to the
 * flow; the timers a close or an attempt calls for are set by the engine (`timers_cb`,
 * `Engine.tcp_timers`). 1 when taken (the caller counts the packet, not its time), 0 to hand the
 * segment to the engine, -1 with an exception set. */
static int tcp_state_path(Table *t, Entry *e, const Row *r, int from_orig, double now) {
    if (!e->has_tcp) return 0;
    /* Data only of a flow nobody reads any more: past its inspected packets, no follower, no
       byte stream kept (then the engine only counts it and runs the state machine). */
    if (r->payload_len != 0 && (e->inspected < t->limit || e->followers || e->has_stream))
        return 0;
    int64_t *T = e->tcp.buf;
    if (tcp_timer_due(T, now, t->linger_s) || dw_tcp_reuse(T, r->flags, r->seq)) return 0;
    if (r->control && e->has_stream && !tcp_acks_no_hole(T, r, from_orig)) return 0;
    if (flush(t) < 0) return -1; /* the flow's last_ts as the engine would read it */
    double last;
    if (read_double(e->flow, s_last_ts, &last) < 0) return -1;
    PyObject *hist = PyObject_GetAttr(e->flow, s_history);
    if (hist == NULL) return -1;
    Py_ssize_t hlen, len;
    const char *h = PyUnicode_Check(hist) ? PyUnicode_AsUTF8AndSize(hist, &hlen) : NULL;
    char small[64 + DW_HISTORY_ROOM], *text = small;
    int rc = -1;
    if (h == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "walk: Flow.history is no str");
        goto out;
    }
    if (hlen > 64 && (text = PyMem_Malloc(hlen + DW_HISTORY_ROOM)) == NULL) {
        PyErr_NoMemory();
        goto out;
    }
    memcpy(text, h, hlen);
    len = hlen;
    int64_t scratch[T_SIZE];
    memcpy(scratch, T, sizeof scratch);
    double was = last;
    int flipped;
    int events = dw_tcp_segment(scratch, from_orig, r->flags, r->seq, r->ack, r->payload_len, now,
                                &last, text, &len, &flipped);
    if (flipped) {
        rc = 0;
        goto out;
    }
    memcpy(T, scratch, sizeof scratch);
    if (len != hlen || memcmp(text, h, hlen) != 0) {
        PyObject *now_hist = PyUnicode_FromStringAndSize(text, len);
        if (now_hist == NULL) goto out;
        PyUnicode_InternInPlace(&now_hist); /* as the engine interns histories */
        int set = PyObject_SetAttr(e->flow, s_history, now_hist);
        Py_DECREF(now_hist);
        if (set < 0) goto out;
    }
    if (last != was) {
        PyObject *v = PyFloat_FromDouble(last);
        if (v == NULL) goto out;
        int set = PyObject_SetAttr(e->flow, s_last_ts, v);
        Py_DECREF(v);
        if (set < 0) goto out;
    }
    if (events) {
        PyObject *res = PyObject_CallFunction(t->timers_cb, "y#id", (const char *)e->key,
                                              (Py_ssize_t)KEY_LEN, events, now);
        if (res == NULL) goto out;
        Py_DECREF(res);
    }
    e->checked = 0; /* its letters and state are read again at its next row */
    rc = 1;
out:
    if (text != small) PyMem_Free(text);
    Py_DECREF(hist);
    return rc;
}

/* ---- the per-packet decoder's `Packet` of a row ---------------------------------------------
 * A row the walk read whole (`ROW_IP`, seen directly or out of an encapsulation) that goes to
 * Python is handed over as the `Packet` the per-packet decoder would make of its frame, made here
 * from what the walk read: the decoder is not run again on it. `packet_setup` gives the class and
 * the member descriptors of its fields, in the order of `PACKET_FIELDS` (dronewatch.fastpath checks
 * at import that they are every field of `Packet`), the `Tunnel` class and its kinds' names
 * (checked to be `TUNNEL_KINDS`); the tests hold the two paths' packets and records equal. */
int dw_check_members(PyTypeObject *cls, PyObject *members);
PyObject *dw_new_record(PyTypeObject *cls, PyObject *members, PyObject *const *values);

static const char *const PACKET_FIELDS[] = {
    "ts", "frame", "wirelen", "caplen", "linktype", "iface", "src_mac", "dst_mac", "vlan",
    "ip_version", "src", "dst", "proto", "sport", "dport", "ip_len", "tcp_flags", "tcp_seq",
    "tcp_ack", "payload", "payload_len", "fragment", "dot11", "tunnel", "raw", "gap", "skipped",
    "bad_checksum",
};
#define PACKET_NFIELDS ((int)(sizeof(PACKET_FIELDS) / sizeof(PACKET_FIELDS[0])))
static PyTypeObject *packet_cls;
static PyObject *packet_members;
static PyObject *tunnel_cls;
static PyObject *tunnel_kinds[TUN_KINDS]; /* the names, as `TUNNEL_NAMES` (index 0 unused) */

static PyObject *packet_setup(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *members, *tunnel;
    if (!PyArg_ParseTuple(args, "O!O!O!:packet_setup", &PyType_Type, &cls, &PyTuple_Type,
                          &members, &PyType_Type, &tunnel))
        return NULL;
    if (PyTuple_GET_SIZE(members) != PACKET_NFIELDS) {
        PyErr_Format(PyExc_TypeError, "packet_setup: %d members expected", PACKET_NFIELDS);
        return NULL;
    }
    if (dw_check_members(cls, members) < 0) return NULL;
    for (int k = 1; k < TUN_KINDS; k++) {
        if (tunnel_kinds[k] == NULL &&
            (tunnel_kinds[k] = PyUnicode_InternFromString(TUNNEL_NAMES[k])) == NULL)
            return NULL;
    }
    Py_INCREF(cls);
    Py_INCREF(members);
    Py_INCREF(tunnel);
    Py_XSETREF(packet_cls, cls);
    Py_XSETREF(packet_members, members);
    Py_XSETREF(tunnel_cls, tunnel);
    Py_RETURN_NONE;
}

static PyObject *protocols_setup(PyObject *self, PyObject *args) {
    PyObject *maps[2], *skipped, *locals = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O|O:protocols_setup", &PyDict_Type, &maps[0], &PyDict_Type,
                          &maps[1], &skipped, &locals))
        return NULL;
    uint32_t nets[MAX_LOCAL4], masks[MAX_LOCAL4];
    int n4 = 0;
    if (locals != NULL) {
        PyObject *seq = PySequence_Fast(locals, "protocols_setup: local4 is a sequence");
        if (seq == NULL) return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        for (Py_ssize_t k = 0; k < n; k++) {
            unsigned long net = 0, mask = 0;
            PyObject *pair = PySequence_Fast_GET_ITEM(seq, k);
            if (k >= MAX_LOCAL4 || !PyArg_ParseTuple(pair, "kk", &net, &mask) ||
                net > 0xFFFFFFFFUL || mask > 0xFFFFFFFFUL) {
                Py_DECREF(seq);
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError,
                                    "protocols_setup: local4 is up to 32 (net, mask) of IPv4");
                return NULL;
            }
            nets[n4] = (uint32_t)net, masks[n4++] = (uint32_t)mask;
        }
        Py_DECREF(seq);
    }
    uint8_t skip6[256] = {0};
    PyObject *it = PyObject_GetIter(skipped), *item;
    if (it == NULL) return NULL;
    while ((item = PyIter_Next(it)) != NULL) {
        long header = PyLong_Check(item) ? PyLong_AsLong(item) : -1;
        Py_DECREF(item);
        if (header < 0 || header > 255) {
            Py_DECREF(it);
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "protocols_setup: next headers are 0..255");
            return NULL;
        }
        skip6[header] = 1;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return NULL;
    int pair[2][256];
    for (int k = 0; k < 2; k++) {
        for (int type = 0; type < 256; type++) pair[k][type] = -1;
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(maps[k], &pos, &key, &value)) {
            long type = PyLong_Check(key) ? PyLong_AsLong(key) : -1;
            long other = PyLong_Check(value) ? PyLong_AsLong(value) : -1;
            if (type < 0 || type > 255 || other < 0 || other > 255) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_ValueError, "protocols_setup: types are 0..255");
                return NULL;
            }
            pair[k][type] = (int)other;
        }
    }
    memcpy(icmp_pair, pair, sizeof pair);
    memcpy(ip6_skipped, skip6, sizeof skip6);
    memcpy(local4_net, nets, sizeof nets);
    memcpy(local4_mask, masks, sizeof masks);
    nlocal4 = n4;
    protocols_ready = 1;
    Py_RETURN_NONE;
}

/* Where a row's frame came from: the batch's columns and numbering. */
typedef struct {
    const uint8_t *buf;
    const int64_t *at, *caps, *wire;
    const int64_t *ifaces; /* each row's interface (a pcapng run), or NULL: `iface` for all */
    const double *ts;
    long long first_frame;
    int linktype, iface;
} Frames;

static PyObject *bytes_at(const uint8_t *p, long long n) {
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
}

/* The `Tunnel` of a row read out of an encapsulation (`r->tun_kind` set). */
static PyObject *row_tunnel(const uint8_t *fr, const Row *r) {
    PyObject *src = bytes_at(fr + r->tun_addr_at, r->tun_alen);
    PyObject *dst = bytes_at(fr + r->tun_addr_at + r->tun_alen, r->tun_alen);
    PyObject *vlan = r->tun_vlan >= 0 ? PyLong_FromLong(r->tun_vlan) : Py_NewRef(Py_None);
    PyObject *ident = r->tun_ident >= 0 ? PyLong_FromLongLong(r->tun_ident) : Py_NewRef(Py_None);
    PyObject *tunnel = NULL;
    if (src != NULL && dst != NULL && vlan != NULL && ident != NULL)
        tunnel = PyObject_CallFunctionObjArgs(tunnel_cls, tunnel_kinds[r->tun_kind], src, dst,
                                              vlan, ident, NULL);
    Py_XDECREF(src);
    Py_XDECREF(dst);
    Py_XDECREF(vlan);
    Py_XDECREF(ident);
    return tunnel;
}

/* The `Packet` of row `i`, read by `parse` into `r` (ROW_IP). */
static PyObject *row_packet(const Frames *f, Py_ssize_t i, const Row *r) {
    const uint8_t *fr = f->buf + f->at[i];
    long long cap = f->caps[i];
    int alen = r->key[0] == 4 ? 4 : 16;
    const uint8_t *lower = r->key + 2, *higher = r->key + 20;
    const uint8_t *src = r->low ? lower : higher, *dst = r->low ? higher : lower;
    PyObject *v[PACKET_NFIELDS];
    v[0] = PyFloat_FromDouble(f->ts[i]);
    v[1] = PyLong_FromLongLong(f->first_frame + i + 1);
    v[2] = PyLong_FromLongLong(f->wire[i]);
    v[3] = PyLong_FromLongLong(cap);
    v[4] = PyLong_FromLong(f->linktype);
    v[5] = f->ifaces != NULL ? PyLong_FromLongLong(f->ifaces[i]) : PyLong_FromLong(f->iface);
    v[6] = bytes_at(fr + (r->src_mac_at >= 0 ? r->src_mac_at : 0), r->src_mac_at >= 0 ? 6 : 0);
    v[7] = bytes_at(fr + (r->dst_mac_at >= 0 ? r->dst_mac_at : 0), r->dst_mac_at >= 0 ? 6 : 0);
    v[8] = r->vlan >= 0 ? PyLong_FromLong(r->vlan) : Py_NewRef(Py_None);
    v[9] = PyLong_FromLong(r->key[0]);
    v[10] = bytes_at(src, alen);
    v[11] = bytes_at(dst, alen);
    v[12] = PyLong_FromLong(r->key[1]);
    v[13] = PyLong_FromLong(r->sport);
    v[14] = PyLong_FromLong(r->dport);
    v[15] = PyLong_FromLongLong(r->ip_len);
    v[16] = PyLong_FromLong(r->flags);
    v[17] = PyLong_FromUnsignedLong(r->seq);
    v[18] = PyLong_FromUnsignedLong(r->ack);
    v[19] = bytes_at(fr + r->payload_at, r->payload_stop - r->payload_at);
    v[20] = PyLong_FromLongLong(r->payload_len);
    v[21] = Py_NewRef(Py_False);
    v[22] = Py_NewRef(Py_None);
    v[23] = r->tun_kind ? row_tunnel(fr, r) : Py_NewRef(Py_None);
    v[24] = bytes_at(fr, cap);
    v[25] = PyLong_FromLong(0);
    v[26] = PyLong_FromLong(0);
    v[27] = Py_NewRef(Py_False);
    PyObject *pkt = NULL;
    int ok = 1;
    for (int k = 0; k < PACKET_NFIELDS; k++) ok &= v[k] != NULL;
    if (ok) pkt = dw_new_record(packet_cls, packet_members, v);
    for (int k = 0; k < PACKET_NFIELDS; k++) Py_XDECREF(v[k]);
    return pkt;
}

/* Whether an 802.11 management frame (`f`, `len` bytes, from its frame control field on) is read
 * by the engine's frame hooks: `dronewatch.core.hooks.FrameInterest.reads` (an action frame when
 * `action`; a beacon or probe response with a vendor-specific element of one of the `n` OUIs at
 * `ouis`, 3 bytes each, its elements walked as `Dot11Frame.vendor_elements` walks them after the
 * 24-byte header and the 12 fixed bytes), held equal to it by a test. */
static int mgmt_wanted(const uint8_t *f, long long len, int subtype, const uint8_t *ouis,
                       Py_ssize_t n, int action) {
    if (subtype == 13) return action;
    if (subtype != 5 && subtype != 8) return 0;
    for (long long pos = 36; pos + 2 <= len;) {
        long long end = pos + 2 + f[pos + 1];
        if (end > len) break;
        if (f[pos] == 221 && f[pos + 1] >= 4)
            for (Py_ssize_t k = 0; k < n; k++)
                if (memcmp(f + pos + 2, ouis + 3 * k, 3) == 0) return 1;
        pos = end;
    }
    return 0;
}

/* Whether ICMPv6 type t is one of `mask`'s (bit t - 128, types 128-191). */
static int icmp6_shared(int t, unsigned long long mask) {
    return t >= 128 && t < 192 && (mask >> (t - 128)) & 1;
}

static PyObject *walk(PyObject *self, PyObject *args) {
    Py_buffer buf, at_b, cap_b, wire_b, ts_b, iface_b = {0};
    int linktype, iface = 0;
    long long first_frame;
    PyObject *iface_o; /* the interface of every row (an int), or a column of them */
    Engine eng = {0};
    Table t = {0};
    PyObject *handle, *follow, *sweep;
    /* This process's share of a shared capture, and the port whose flows every process makes;
       `facts`: where another process's UDP datagram on that port goes (None: the engine makes
       its flow, through `handle`). */
    int share_k = 0, share_n = 1, share_port = -1, checksums = CK_IGNORE;
    PyObject *facts = Py_None;
    /* The ICMPv6 types whose messages every process reads too (`Share.icmp6_mask`: bit t - 128
       for type t), handed to `facts` as the datagrams on share_port are. */
    unsigned long long share_icmp6 = 0;
    /* The management frames the engine's frame hooks may read (`mgmt_wanted`; None: any), and
       whether the engine has had a packet (until then every management frame goes to it: the
       first packet sets the capture's start). */
    PyObject *frame_ouis = Py_None;
    int frame_action = 1, started = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*iLOdLLddOOOOOOO|iiiiOOiiK", &buf, &at_b, &cap_b,
                          &wire_b, &ts_b, &linktype, &first_frame, &iface_o, &eng.next_sweep,
                          &eng.ended, &t.limit, &t.active_s, &t.linger_s, &t.lookup, &handle,
                          &follow, &sweep, &t.counted_cb, &t.skipped_cb, &t.timers_cb, &share_k,
                          &share_n, &share_port, &checksums, &facts, &frame_ouis, &frame_action,
                          &started, &share_icmp6))
        return NULL;
    if (PyLong_Check(iface_o)) iface = (int)PyLong_AsLong(iface_o);
    else if (PyObject_GetBuffer(iface_o, &iface_b, PyBUF_SIMPLE) < 0) iface_b.obj = NULL;
    const uint8_t *ouis = NULL;
    Py_ssize_t nouis = 0;
    if (frame_ouis != Py_None) {
        if (PyBytes_Check(frame_ouis) && PyBytes_GET_SIZE(frame_ouis) % 3 == 0) {
            ouis = (const uint8_t *)PyBytes_AS_STRING(frame_ouis);
            nouis = PyBytes_GET_SIZE(frame_ouis) / 3;
        } else if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "walk: frame_ouis must be bytes of 3-byte OUIs");
        }
    }
    if (PyErr_Occurred() || share_n < 1 || share_k < 0 || share_k >= share_n ||
        checksums < CK_IGNORE || checksums > CK_VERIFY || packet_cls == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError,
                            packet_cls == NULL ? "walk: packet_setup was not called"
                                               : "walk: share index or checksum mode out of range");
        PyBuffer_Release(&buf);
        PyBuffer_Release(&at_b);
        PyBuffer_Release(&cap_b);
        PyBuffer_Release(&wire_b);
        PyBuffer_Release(&ts_b);
        if (iface_b.obj != NULL) PyBuffer_Release(&iface_b);
        return NULL;
    }
    PyObject *result = NULL;
    const uint8_t *b = buf.buf;
    const int64_t *at = at_b.buf, *caps = cap_b.buf;
    const double *ts = ts_b.buf;
    Py_ssize_t n = at_b.len / (Py_ssize_t)sizeof(int64_t);
    const Frames frames = {b,  at, caps, wire_b.buf, iface_b.obj != NULL ? iface_b.buf : NULL,
                           ts, first_frame, linktype, iface};
    if (cap_b.len != at_b.len || ts_b.len != at_b.len || wire_b.len != at_b.len ||
        (iface_b.obj != NULL && iface_b.len != at_b.len)) {
        PyErr_SetString(PyExc_ValueError, "walk: arrays of different lengths");
        goto done;
    }
    if (table_init(&t, 1024) < 0) goto done;
    long long soft = 0; /* bumped when Python may have touched a flow not known here: re-read all */
    Row r, whole; /* a row, and the A-MSDU row its subframes are read from */
    r.checksums = checksums;
    for (Py_ssize_t i = 0; i < n; i++) {
        double now = ts[i];
        long long cap = caps[i];
        if ((i & 0xFFFF) == 0 && i && PyErr_CheckSignals() < 0) goto done;
        if (i + PREFETCH_ROWS < n) { /* a later row's headers, on their way while this one is read */
            int64_t ahead = at[i + PREFETCH_ROWS];
            if (ahead >= 0 && ahead + 128 <= buf.len) {
                __builtin_prefetch(b + ahead);
                __builtin_prefetch(b + ahead + 64);
            }
        }
        if (at[i] < 0 || cap < 0 || at[i] + cap > buf.len) {
            PyErr_SetString(PyExc_ValueError, "walk: a frame lies outside the buffer");
            goto done;
        }
        parse(b + at[i], cap, linktype, &r);
        /* An A-MSDU: each of its packets a row of its own, all of this frame (`parts`). */
        int parts = 1;
        long long sub_at = -1;
        if (r.ok == ROW_AMSDU) {
            parts = amsdu_parts(b + at[i], &r);
            if (parts) sub_at = r.amsdu_at, whole = r;
            else parts = 1, r.ok = ROW_PYTHON;
        }
        if (r.ok == ROW_SKIP && (r.kind == SKIP_DOT11_PROTECTED
                                     ? count_encrypted(&t, r.kind, b + at[i], r.src_mac_at, cap)
                                     : count_skipped(&t, r.kind)))
            continue;
        if (r.ok == ROW_MGMT) {
            /* A management frame no frame hook reads (a monitor-mode capture is mostly beacons):
               counted here as the decoder and the engine count it, after the sweep its time
               calls for. The others, and any until the engine has had a packet, go to them. */
            if (frame_ouis != Py_None && started &&
                !mgmt_wanted(b + at[i] + r.mgmt_at, r.mgmt_len, r.kind & 0xF, ouis, nouis,
                             frame_action)) {
                if (now >= eng.next_sweep &&
                    (flush(&t) < 0 ||
                     after_call(&t, &eng, PyObject_CallFunction(sweep, "dn", now, i), NULL) < 0))
                    goto done;
                if (count_skipped(&t, r.kind)) {
                    t.frames_counted++;
                    t.counted++;
                    if (!t.has_latest || now > t.latest) t.latest = now;
                    t.has_latest = 1;
                    continue;
                }
            }
            started = 1; /* the decoder makes its packet, which reaches the engine */
        }
        if (r.ok != ROW_IP && r.ok != ROW_AMSDU) {
            /* the per-packet decoder's; an IP packet of it may touch any flow */
            int touched;
            if (flush(&t) < 0 ||
                after_call(&t, &eng, PyObject_CallFunction(handle, "nO", i, Py_None), &touched) <
                    0)
                goto done;
            if (touched) soft++;
            continue;
        }
        for (int part = 0; part < parts; part++) {
            if (sub_at >= 0) { /* the packet of the A-MSDU's next subframe */
                r = whole;
                sub_at = msdu(b + at[i], sub_at, whole.amsdu_end, whole.amsdu_depth, &r);
            }
            if (now >= eng.next_sweep) {
                if (flush(&t) < 0 ||
                    after_call(&t, &eng, PyObject_CallFunction(sweep, "dn", now, i), NULL) < 0)
                    goto done;
            }
            if (share_n > 1) {
                int on_port = be16(r.key + 18) == share_port || be16(r.key + 36) == share_port;
                /* An ICMPv6 message of a type every process reads (as `Share.making`: either
                   end's "port", its type or its pair's, is one of them). */
                int by_type = r.key[1] == 58 && (icmp6_shared(be16(r.key + 18), share_icmp6) ||
                                                 icmp6_shared(be16(r.key + 36), share_icmp6));
                if (by_type) on_port = 1;
                if ((!on_port || (facts != Py_None && (r.key[1] == 17 || by_type))) &&
                    (int)(key_crc(r.key) % (uint32_t)share_n) != share_k) {
                    if (!on_port) {
                        /* Another process's flow: only its time counts here (the sweeps above,
                           `latest`). */
                        if (!t.has_latest || now > t.latest) t.latest = now;
                        t.has_latest = 1;
                        continue;
                    }
                    if (!r.same) {
                        /* Another process's UDP datagram on the shared port, its checksums good:
                           read for its facts without its flow (`Engine.read_facts`), which touches
                           no flow (the counts held here need not be written first). */
                        PyObject *pkt = row_packet(&frames, i, &r);
                        if (pkt == NULL) goto done;
                        PyObject *res = PyObject_CallFunction(facts, "nO", i, pkt);
                        Py_DECREF(pkt);
                        if (res == NULL) goto done;
                        Py_DECREF(res);
                        continue;
                    }
                }
            }
            Entry *e = NULL;
            int go_python = r.same; /* which end sent it cannot be told */
            if (!go_python) {
                e = table_get(&t, r.key);
                if (e == NULL) goto done;
                int got = (e->checked && e->epoch == soft) ? 1 : check(&t, e);
                e->epoch = soft;
                if (got < 0) goto done;
                go_python = got == 0 || now - e->first_ts > t.active_s;
            }
            int from_orig = 0, to_follow = 0, to_count = 0, by_state = 0;
            if (!go_python) {
                from_orig = r.low == e->orig_low;
                /* SYN, FIN and RST change the connection's state, and a bare ACK may write a
                   letter: the state machine's. A new data letter is the engine's (the first data
                   each way). */
                by_state = r.control;
                if (!by_state && r.letter) {
                    int bit = r.letter == 1 ? (from_orig ? HAS_D : HAS_d)
                                            : (from_orig ? HAS_A : HAS_a);
                    if (!(e->letters & bit)) {
                        if (r.letter == 2 && r.tcp)
                            by_state = 1;
                        else
                            go_python = 1;
                    }
                }
                if (!go_python && !by_state && r.tcp)
                    by_state = !tcp_countable(e, &r, from_orig, now, t.linger_s);
                if (by_state) {
                    int taken = tcp_state_path(&t, e, &r, from_orig, now);
                    if (taken < 0) goto done;
                    go_python = !taken;
                }
            }
            if (!go_python && r.has_payload) {
                if (e->inspected < t.limit) {
                    if (e->inspectors) {
                        if (e->native_inspect && !r.tcp) to_count = 1;
                        /* Its one inspector reads the byte stream and passes over these bytes:
                           the row is counted below, as a settled flow's. */
                        else go_python = !(r.tcp && e->inspectors == 1 &&
                                           tcp_passed_over(e, &r, from_orig));
                    }
                } else if (e->followers) {
                    if (r.tcp)
                        go_python =
                            !tcp_fed(e, &r, b + at[i] + r.payload_at,
                                     (Py_ssize_t)(r.payload_stop - r.payload_at), from_orig) &&
                            !tcp_passed_over(e, &r, from_orig);
                    else if (e->counters != NULL) to_count = 1;
                    else to_follow = 1;
                }
            }
            if (go_python) {
                /* The decoder's packet, made here. */
                PyObject *pkt = row_packet(&frames, i, &r);
                if (pkt == NULL) goto done;
                if (flush(&t) < 0) {
                    Py_DECREF(pkt);
                    goto done;
                }
                PyObject *res = PyObject_CallFunction(handle, "nO", i, pkt);
                Py_DECREF(pkt);
                if (after_call(&t, &eng, res, NULL) < 0) goto done;
                if (e != NULL) e->checked = 0; /* the flow may have changed */
                continue;
            }
            /* Count the row. */
            if (r.tcp && !by_state) tcp_count(e, &r, from_orig, now);
            /* ICMP's payload bytes are those past its 8-byte header, as Zeek counts them. */
            long long plen = !r.icmp ? r.payload_len : r.payload_len > 4 ? r.payload_len - 4 : 0;
            if (from_orig) {
                e->o_pkts++;
                e->o_bytes += r.ip_len;
                e->o_plen += plen;
            } else {
                e->r_pkts++;
                e->r_bytes += r.ip_len;
                e->r_plen += plen;
            }
            if (r.has_payload && e->inspected < t.limit) {
                e->inspected++;
                e->new_inspected++;
            }
            /* The state machine wrote the flow's last packet time itself (a closed connection's
               does not move). */
            double row_last = by_state ? -INFINITY : now;
            if (!e->dirty) {
                e->dirty = 1;
                e->last_ts = row_last;
                t.dirty[t.ndirty++] = e;
            } else if (row_last > e->last_ts) {
                e->last_ts = row_last;
            }
            if (!t.has_latest || now > t.latest) t.latest = now;
            t.has_latest = 1;
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
                PyObject *pkt = row_packet(&frames, i, &r);
                if (pkt == NULL || flush(&t) < 0) {
                    Py_XDECREF(pkt);
                    Py_DECREF(flow);
                    goto done;
                }
                PyObject *res = PyObject_CallFunction(follow, "nOO", i, flow, pkt);
                Py_DECREF(pkt);
                Py_DECREF(flow);
                if (after_call(&t, &eng, res, NULL) < 0) goto done;
                e->checked = 0; /* a follower may have declined */
            }
        }
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
    PyBuffer_Release(&wire_b);
    PyBuffer_Release(&ts_b);
    if (iface_b.obj != NULL) PyBuffer_Release(&iface_b);
    return result;
}

/* The link types whose frames `walk` reads (a batch of any other goes to the decoder). */
static PyObject *linktypes(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(iiiiiiiiiiii)", LT_NULL, LT_ETHERNET, LT_RAW_OPENBSD, LT_RAW_14, LT_RAW,
                         LT_IEEE802_11, LT_LOOP, LT_LINUX_SLL, LT_IEEE802_11_RADIOTAP, LT_IPV4,
                         LT_IPV6, LT_LINUX_SLL2);
}

static PyObject *key_crc_py(PyObject *self, PyObject *arg) {
    Py_buffer key;
    if (PyObject_GetBuffer(arg, &key, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *r = key.len == KEY_LEN ? PyLong_FromUnsignedLong(key_crc(key.buf)) : NULL;
    if (r == NULL && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "key_crc: a key row is %d bytes", KEY_LEN);
    PyBuffer_Release(&key);
    return r;
}

static PyMethodDef methods[] = {
    {"key_crc", key_crc_py, METH_O,
     "key_crc(key) -> int\n\n"
     "The CRC-32 (zlib's) of a key row, as the walk computes it for a shared capture's rows "
     "(dronewatch.core.engine.owner)."},
    {"record_fields", record_fields, METH_VARARGS,
     "record_fields(buf, pos, limit, big_endian, nano) -> (data_at, caplen, wirelen, ts, "
     "wire_bytes, truncated, next position)\n\n"
     "The pcap records that lie whole in buf from pos on, as columns (bytes of int64, and of "
     "double for ts); stops at the first record cut by the buffer's end or longer than limit."},
    {"block_fields", block_fields, METH_VARARGS,
     "block_fields(buf, pos, limit, big_endian, ifaces, linktype) -> (data_at, caplen, wirelen, "
     "ts, iface, wire_bytes, truncated, next position, last ts)\n\n"
     "The pcapng enhanced packet blocks that lie whole in buf from pos on, of interfaces of "
     "link type linktype, as columns; ifaces: (link type, timestamp scale, offset) per interface."},
    {"walk", walk, METH_VARARGS,
     "walk(buf, data_at, caplen, wirelen, ts, linktype, first_frame, iface, next_sweep, ended, "
     "limit, active_s, linger_s, lookup, handle, follow, sweep, counted, skipped, timers[, "
     "share_k, share_n, share_port, checksums, facts, frame_ouis, frame_action, started, "
     "share_icmp6]) "
     "-> next sweep time\n\n"
     "Walk the rows of a batch in order, counting the packets of settled flows and the frames "
     "that are not IP here and handing every other row to the call backs (see "
     "dronewatch.fastpath.bulk), with the decoder's Packet of each row read whole here "
     "(packet_setup; None for a row the decoder must read). share_k of share_n: skip the rows "
     "of the flows another process of a shared capture makes (dronewatch.core.engine.owner; those with port "
     "share_port at one end, and the ICMPv6 messages of share_icmp6's types (bit t - 128), "
     "excepted), their times only making sweeps; facts (if not None) is handed another "
     "process's UDP datagrams on share_port and those ICMPv6 messages, for what they teach "
     "without their flows. frame_ouis (bytes of 3-byte OUIs; None: every frame is read) and "
     "frame_action: the 802.11 management frames the engine's frame hooks read (beacons and "
     "probe responses with a vendor element of one of the OUIs, action frames); the others "
     "are counted here once started (the engine has had a packet). counted(n, latest, frames): "
     "rows counted here, the latest time, and how many of them were management frames."},
    {"packet_setup", packet_setup, METH_VARARGS,
     "packet_setup(cls, members, tunnel)\n\n"
     "The Packet class walk hands rows over as, the member descriptors of its fields in the "
     "order of PACKET_FIELDS, and the Tunnel class of the packets out of an encapsulation "
     "(kinds named as TUNNEL_KINDS)."},
    {"protocols_setup", protocols_setup, METH_VARARGS,
     "protocols_setup(icmp_pairs4, icmp_pairs6, ip6_skipped[, local4])\n\n"
     "The ICMP and ICMPv6 message types the walk keys with their counterpart's, as "
     "{type: counterpart} (a request and its reply are one flow), and the IPv6 next headers the "
     "decoder reads past or reassembles; local4: the built-in local IPv4 ranges as (net, mask) "
     "integers, whose ARP requests are counted here (the others go to the decoder, which reads "
     "what they show on the link). Until it is called, every packet goes to the decoder."},
    {"linktypes", linktypes, METH_NOARGS,
     "linktypes() -> the link types whose frames walk reads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastpath", "The bulk path's inner loops in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

int dw_add_ring(PyObject *module); /* _ring.c: the AF_PACKET ring's reader */
int dw_add_jsonline(PyObject *module); /* _jsonline.c: a record as a JSONL line */
int dw_add_record(PyObject *module);   /* _record.c: a record made without __init__ */
int dw_add_dns(PyObject *module);      /* _dns.c: a DNS message read off the wire */
int dw_add_flowid(PyObject *module);   /* _flowid.c: a flow's uid and Community ID hash */
int dw_add_tcp(PyObject *module);      /* _tcp.c: one TCP segment's accounting */

PyMODINIT_FUNC PyInit__fastpath(void) {
#define INTERN(var, text)                                                                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    INTERN(s_tcp, "tcp");
    INTERN(s_stream, "stream");
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
    crc_init();
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (dw_add_counters(m) < 0 || dw_add_ring(m) < 0 || dw_add_jsonline(m) < 0 ||
        dw_add_record(m) < 0 || dw_add_dns(m) < 0 || dw_add_flowid(m) < 0 || dw_add_tcp(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    /* The Flow attributes read or written above by name; dronewatch.fastpath checks at import
       that Flow still has each of them. */
    PyObject *fields = PyTuple_Pack(
        18, s_stream, s_first_ts, s_last_ts, s_inspected, s_inspectors, s_followers, s_history, s_counters,
        s_inspector_names, s_orig_h, s_orig_p, s_orig_pkts, s_resp_pkts, s_orig_bytes,
        s_resp_bytes, s_orig_payload_bytes, s_resp_payload_bytes, s_tcp);
    if (fields == NULL || PyModule_AddObject(m, "FLOW_FIELDS", fields) < 0) {
        Py_XDECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *packet_fields = PyTuple_New(PACKET_NFIELDS);
    for (int k = 0; packet_fields != NULL && k < PACKET_NFIELDS; k++) {
        PyObject *name = PyUnicode_InternFromString(PACKET_FIELDS[k]);
        if (name == NULL) Py_CLEAR(packet_fields);
        else PyTuple_SET_ITEM(packet_fields, k, name);
    }
    if (packet_fields == NULL || PyModule_AddObject(m, "PACKET_FIELDS", packet_fields) < 0) {
        Py_XDECREF(packet_fields);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *kinds = PyTuple_New(TUN_KINDS - 1);
    for (int k = 1; kinds != NULL && k < TUN_KINDS; k++) {
        PyObject *name = PyUnicode_InternFromString(TUNNEL_NAMES[k]);
        if (name == NULL) Py_CLEAR(kinds);
        else PyTuple_SET_ITEM(kinds, k - 1, name);
    }
    if (kinds == NULL || PyModule_AddObject(m, "TUNNEL_KINDS", kinds) < 0) {
        Py_XDECREF(kinds);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
