/* A flow's two identifiers, hashed in C: a flood of new flows (a SYN scan) makes both for every
   packet, and the Python twins spend most of their time packing bytes and calling hashlib.

   flow_uid(proto, a, a_port, b, b_port, first_ts) -> str: what
   dronewatch.core.engine.flow_uid makes of the key (proto, a, a_port, b, b_port), "C" and
   the first 17 base32 characters (RFC 4648) of the SHA-1 of the protocol, the two ports, the two
   addresses and the first time (network byte order, the time as an IEEE 754 double).

   community_hash(seed, saddr, daddr, proto, sport, dport, ports) -> str: "1:" and the base64
   of the SHA-1 of the Community ID v1 input (corelight/community-id-spec): the seed, the two
   addresses, the protocol, a zero byte and, when ports is true, the two ports, each in network
   byte order. Which end goes first and what stands for the ports are decided by
   dronewatch.core.community_id, which calls this.

   SHA-1 as FIPS 180-4 section 6.1 states it. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define HASHED_MAX 64 /* the longest input of either: 1 + 2 + 2 + 16 + 16 + 8 bytes */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *block) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
               (uint32_t)block[4 * t + 2] << 8 | (uint32_t)block[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (t < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (t < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t tmp = rol(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* The digest of a message of at most HASHED_MAX bytes (one or two blocks once padded). */
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char buf[128];
    memset(buf, 0, sizeof buf);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    size_t total = len + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t at = 0; at < total; at += 64) sha1_block(h, buf + at);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8);
        out[4 * i + 3] = (unsigned char)h[i];
    }
}

static int put_address(unsigned char *at, size_t *len, const char *what, PyObject *addr) {
    if (!PyBytes_Check(addr) || (PyBytes_GET_SIZE(addr) != 4 && PyBytes_GET_SIZE(addr) != 16)) {
        PyErr_Format(PyExc_ValueError, "%s: a packed address of 4 or 16 bytes", what);
        return -1;
    }
    memcpy(at + *len, PyBytes_AS_STRING(addr), (size_t)PyBytes_GET_SIZE(addr));
    *len += (size_t)PyBytes_GET_SIZE(addr);
    return 0;
}

static void put16(unsigned char *at, size_t *len, unsigned v) {
    at[(*len)++] = (unsigned char)(v >> 8);
    at[(*len)++] = (unsigned char)v;
}

static const char B32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static PyObject *flow_uid(PyObject *self, PyObject *args) {
    unsigned int proto, a_port, b_port;
    PyObject *a, *b;
    double ts;
    if (!PyArg_ParseTuple(args, "IO!IO!Id", &proto, &PyBytes_Type, &a, &a_port, &PyBytes_Type, &b,
                          &b_port, &ts))
        return NULL;
    if (proto > 255 || a_port > 65535 || b_port > 65535) {
        PyErr_SetString(PyExc_ValueError, "flow_uid: a protocol byte and two 16-bit ports");
        return NULL;
    }
    unsigned char in[HASHED_MAX], digest[20];
    size_t len = 0;
    in[len++] = (unsigned char)proto;
    put16(in, &len, a_port);
    put16(in, &len, b_port);
    if (put_address(in, &len, "flow_uid", a) < 0 || put_address(in, &len, "flow_uid", b) < 0)
        return NULL;
    uint64_t bits;
    memcpy(&bits, &ts, 8);
    for (int i = 7; i >= 0; i--) in[len++] = (unsigned char)(bits >> (8 * i));
    sha1(in, len, digest);
    char text[18];
    text[0] = 'C';
    /* 17 characters: the digest's first 85 bits, 5 to a character. */
    for (int c = 0; c < 17; c++) {
        int bit = 5 * c, v = 0;
        for (int j = 0; j < 5; j++, bit++) v = v << 1 | (digest[bit >> 3] >> (7 - (bit & 7)) & 1);
        text[1 + c] = B32[v];
    }
    return PyUnicode_FromStringAndSize(text, 18);
}

static PyObject *community_hash(PyObject *self, PyObject *args) {
    unsigned int seed, proto, sport, dport;
    PyObject *saddr, *daddr;
    int ports;
    if (!PyArg_ParseTuple(args, "IO!O!IIIp", &seed, &PyBytes_Type, &saddr, &PyBytes_Type, &daddr,
                          &proto, &sport, &dport, &ports))
        return NULL;
    if (seed > 65535 || proto > 255 || sport > 65535 || dport > 65535) {
        PyErr_SetString(PyExc_ValueError, "community_hash: a 16-bit seed and ports, a protocol byte");
        return NULL;
    }
    unsigned char in[HASHED_MAX], digest[21];
    size_t len = 0;
    put16(in, &len, seed);
    if (put_address(in, &len, "community_hash", saddr) < 0 ||
        put_address(in, &len, "community_hash", daddr) < 0)
        return NULL;
    in[len++] = (unsigned char)proto;
    in[len++] = 0;
    if (ports) {
        put16(in, &len, sport);
        put16(in, &len, dport);
    }
    sha1(in, len, digest);
    digest[20] = 0;
    char text[2 + 28];
    text[0] = '1';
    text[1] = ':';
    /* base64 of 20 bytes: six groups of three, then two bytes and one '=' of padding. */
    char *out = text + 2;
    for (int i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)digest[i] << 16 | (uint32_t)digest[i + 1] << 8 |
                     (i + 2 < 21 ? digest[i + 2] : 0);
        *out++ = B64[v >> 18 & 63];
        *out++ = B64[v >> 12 & 63];
        *out++ = B64[v >> 6 & 63];
        *out++ = i + 2 < 20 ? B64[v & 63] : '=';
    }
    return PyUnicode_FromStringAndSize(text, sizeof text);
}

static PyMethodDef flowid_methods[] = {
    {"flow_uid", flow_uid, METH_VARARGS,
     "flow_uid(proto, a, a_port, b, b_port, first_ts) -> the flow's uid "
     "(dronewatch.core.engine.flow_uid)."},
    {"community_hash", community_hash, METH_VARARGS,
     "community_hash(seed, saddr, daddr, proto, sport, dport, ports) -> '1:' and the base64 "
     "SHA-1 of the Community ID v1 input (dronewatch.core.community_id)."},
    {NULL, NULL, 0, NULL},
};

int dw_add_flowid(PyObject *module) { return PyModule_AddFunctions(module, flowid_methods); }
