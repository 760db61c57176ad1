/* A record made from its field values without its dataclass __init__.

   new_record(cls, members, values) allocates an instance of cls and stores values[i] in the
   slot of members[i], the member descriptors of cls's fields in field order (the caller checks
   that they are cls's own slots and that cls has no __post_init__): what cls(*values) makes of
   a frozen slots dataclass, which sets each field through object.__setattr__ (a record of 45
   fields costs about 5 microseconds that way, and a flood of flows makes one per flow). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* 0 when each of `members` is a writable object slot of an ancestor of cls; -1 with a
   TypeError otherwise. */
int dw_check_members(PyTypeObject *cls, PyObject *members) {
    Py_ssize_t n = PyTuple_GET_SIZE(members);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(members, i);
        if (!Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            (((PyMemberDescrObject *)d)->d_member->flags & READONLY) ||
            !PyType_IsSubtype(cls, ((PyDescrObject *)d)->d_type)) {
            PyErr_Format(PyExc_TypeError, "new_record: member %zd is not a slot of %s", i,
                         cls->tp_name);
            return -1;
        }
    }
    return 0;
}

/* An instance of cls with values[i] in the slot of members[i] (checked by dw_check_members;
   as many values as members). */
PyObject *dw_new_record(PyTypeObject *cls, PyObject *members, PyObject *const *values) {
    PyObject *obj = cls->tp_alloc(cls, 0);
    if (obj == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(members);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMemberDef *m = ((PyMemberDescrObject *)PyTuple_GET_ITEM(members, i))->d_member;
        PyObject **slot = (PyObject **)((char *)obj + m->offset);
        Py_INCREF(values[i]);
        Py_XSETREF(*slot, values[i]);
    }
    return obj;
}

static PyObject *new_record(PyObject *self, PyObject *args) {
    PyTypeObject *cls;
    PyObject *members, *values;
    if (!PyArg_ParseTuple(args, "O!O!O!:new_record", &PyType_Type, &cls, &PyTuple_Type, &members,
                          &PyTuple_Type, &values))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(members);
    if (PyTuple_GET_SIZE(values) != n) {
        PyErr_Format(PyExc_TypeError, "%s takes %zd field values, %zd given", cls->tp_name, n,
                     PyTuple_GET_SIZE(values));
        return NULL;
    }
    if (dw_check_members(cls, members) < 0) return NULL;
    return dw_new_record(cls, members, ((PyTupleObject *)values)->ob_item);
}

static PyMethodDef record_methods[] = {
    {"new_record", new_record, METH_VARARGS,
     "new_record(cls, members, values) -> record\n\n"
     "An instance of cls with values[i] in the slot of the member descriptor members[i], "
     "without calling __init__."},
    {NULL, NULL, 0, NULL},
};

int dw_add_record(PyObject *module) {
    return PyModule_AddFunctions(module, record_methods);
}
