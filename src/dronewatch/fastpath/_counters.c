/* The FrameCounter base type and the registration of the counter types (see _counters.h). */
#include "_counters.h"

void dw_duml_tables(void);

static PyObject *counter_feed(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "feed(payload, from_orig=True): 1 or 2 arguments");
        return NULL;
    }
    int from_orig = nargs < 2 ? 1 : PyObject_IsTrue(args[1]);
    if (from_orig < 0) return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    dw_FrameCounter *c = (dw_FrameCounter *)self;
    Py_ssize_t n = c->feed(c, data.buf, data.len, from_orig);
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(n);
}

static PyObject *counter_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyErr_Format(PyExc_TypeError, "%s is an abstract type: use one of its subtypes", type->tp_name);
    return NULL;
}

static PyMethodDef counter_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))counter_feed, METH_FASTCALL,
     "feed(payload, from_orig=True, /) -> frames counted in this datagram's payload, or -1 when "
     "the protocol rejects it whole"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject dw_FrameCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dronewatch.fastpath._fastpath.FrameCounter",
    .tp_doc = "Per-flow frame counter of a drone-link follower, which the C walk feeds itself.",
    .tp_basicsize = sizeof(dw_FrameCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = counter_new,
    .tp_methods = counter_methods,
};

PyObject *dw_bit_set(const uint8_t *bits, int n) {
    PyObject *out = PyFrozenSet_New(NULL);
    for (int i = 0; out != NULL && i < n; i++) {
        if (!(bits[i >> 3] & (1 << (i & 7)))) continue;
        PyObject *v = PyLong_FromLong(i);
        if (v == NULL || PySet_Add(out, v) < 0) Py_CLEAR(out);
        Py_XDECREF(v);
    }
    return out;
}

int dw_dict_count(PyObject *dict, PyObject *key, long long count) {
    PyObject *v = key != NULL ? PyLong_FromLongLong(count) : NULL;
    int rc = v != NULL ? PyDict_SetItem(dict, key, v) : -1;
    Py_XDECREF(key);
    Py_XDECREF(v);
    return rc;
}

static int add_type(PyObject *module, PyTypeObject *type, const char *name) {
    if (PyType_Ready(type) < 0) return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

int dw_add_counters(PyObject *module) {
    dw_duml_tables();
    dw_DumlCounterType.tp_base = &dw_FrameCounterType;
    dw_ArsdkCounterType.tp_base = &dw_FrameCounterType;
    dw_MavlinkCounterType.tp_base = &dw_FrameCounterType;
    dw_MqttCounterType.tp_base = &dw_FrameCounterType;
    dw_TelloStateCounterType.tp_base = &dw_FrameCounterType;
    if (add_type(module, &dw_FrameCounterType, "FrameCounter") < 0 ||
        add_type(module, &dw_DumlCounterType, "DumlCounter") < 0 ||
        add_type(module, &dw_ArsdkCounterType, "ArsdkCounter") < 0 ||
        add_type(module, &dw_MavlinkCounterType, "MavlinkCounter") < 0 ||
        add_type(module, &dw_MqttCounterType, "MqttCounter") < 0 ||
        add_type(module, &dw_TelloStateCounterType, "TelloStateCounter") < 0)
        return -1;
    return 0;
}
