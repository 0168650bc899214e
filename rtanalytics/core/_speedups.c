/*
 * The ingest hot path in C: validates the common case of a point dict and appends it to the
 * columns of a PointBatch. Anything out of the ordinary -- a name or tag set not seen valid
 * before, a type conflict, a `unique` value, a string timestamp, a `window`, any error -- is
 * left to the Python parser (rtanalytics/core/metrics.py), which remains the reference: the
 * tests run both paths on the same inputs and require the same batch.
 *
 * fast_parse(points, now, latest, oldest, names_ok, tags_cache, known_types, types_by_value,
 *            skip_type, count_type, index, names, types, tags, timestamps, values) -> list[int]
 * returns the positions it did not take.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static PyObject *k_name, *k_type, *k_value, *k_tags, *k_timestamp, *k_window, *empty_tuple;

static PyObject *
fast_parse(PyObject *self, PyObject *args)
{
    PyObject *points, *names_ok, *tags_cache, *known, *types_by_value, *skip_type, *count_type;
    PyObject *o_index, *o_names, *o_types, *o_tags, *o_ts, *o_values;
    double now, latest, oldest;
    if (!PyArg_ParseTuple(args, "O!dddO!O!O!O!OOO!O!O!O!O!O!",
                          &PyList_Type, &points, &now, &latest, &oldest,
                          &PySet_Type, &names_ok, &PyDict_Type, &tags_cache, &PyDict_Type, &known,
                          &PyDict_Type, &types_by_value, &skip_type, &count_type,
                          &PyList_Type, &o_index, &PyList_Type, &o_names, &PyList_Type, &o_types,
                          &PyList_Type, &o_tags, &PyList_Type, &o_ts, &PyList_Type, &o_values))
        return NULL;
    PyObject *slow = PyList_New(0);
    if (slow == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(points);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *p = PyList_GET_ITEM(points, i);
        PyObject *name, *raw_type, *mtype, *held, *value, *raw_tags, *tags, *raw_ts;
        double v, ts;
        if (!PyDict_CheckExact(p))
            goto take_slow;
        name = PyDict_GetItemWithError(p, k_name);
        if (name == NULL || !PyUnicode_CheckExact(name)) {
            if (PyErr_Occurred()) goto fail;
            goto take_slow;
        }
        int seen = PySet_Contains(names_ok, name);
        if (seen < 0) goto fail;
        if (!seen) goto take_slow;
        raw_type = PyDict_GetItemWithError(p, k_type);
        if (raw_type == NULL || !PyUnicode_CheckExact(raw_type)) {
            if (PyErr_Occurred()) goto fail;
            goto take_slow;
        }
        mtype = PyDict_GetItemWithError(types_by_value, raw_type);
        if (mtype == NULL) {
            if (PyErr_Occurred()) goto fail;
            goto take_slow;
        }
        if (mtype == skip_type)
            goto take_slow;
        held = PyDict_GetItemWithError(known, name);
        if (held == NULL) {
            if (PyErr_Occurred()) goto fail;
        } else if (held != mtype) {
            goto take_slow;
        }
        value = PyDict_GetItemWithError(p, k_value);
        if (value == NULL) {
            if (PyErr_Occurred()) goto fail;
            if (mtype != count_type) goto take_slow;
            v = 1.0;
        } else if (PyFloat_CheckExact(value)) {
            v = PyFloat_AS_DOUBLE(value);
        } else if (PyLong_CheckExact(value)) {
            v = PyLong_AsDouble(value);
            if (v == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto take_slow; }
        } else if (value == Py_None && mtype == count_type) {
            v = 1.0;
        } else {
            goto take_slow;
        }
        if (!isfinite(v))
            goto take_slow;
        raw_tags = PyDict_GetItemWithError(p, k_tags);
        if (raw_tags == NULL || raw_tags == Py_None) {
            if (PyErr_Occurred()) goto fail;
            tags = empty_tuple;
        } else if (PyDict_CheckExact(raw_tags)) {
            Py_ssize_t size = PyDict_GET_SIZE(raw_tags), pos = 0, k = 0;
            PyObject *key, *val;
            PyObject *items = PyTuple_New(size);
            if (items == NULL) goto fail;
            while (PyDict_Next(raw_tags, &pos, &key, &val)) {
                PyObject *pair = PyTuple_Pack(2, key, val);
                if (pair == NULL) { Py_DECREF(items); goto fail; }
                PyTuple_SET_ITEM(items, k++, pair);
            }
            tags = PyDict_GetItemWithError(tags_cache, items);
            Py_DECREF(items);
            if (tags == NULL) {
                if (PyErr_Occurred()) goto fail;
                goto take_slow;
            }
        } else {
            goto take_slow;
        }
        raw_ts = PyDict_GetItemWithError(p, k_timestamp);
        if (raw_ts == NULL || raw_ts == Py_None) {
            if (PyErr_Occurred()) goto fail;
            ts = now;
        } else if (PyFloat_CheckExact(raw_ts)) {
            ts = PyFloat_AS_DOUBLE(raw_ts);
        } else if (PyLong_CheckExact(raw_ts)) {
            ts = PyLong_AsDouble(raw_ts);
            if (ts == -1.0 && PyErr_Occurred()) { PyErr_Clear(); goto take_slow; }
        } else {
            goto take_slow;
        }
        if (!isfinite(ts) || ts > latest || ts < oldest)
            goto take_slow;
        {
            int has_window = PyDict_Contains(p, k_window);
            if (has_window < 0) goto fail;
            if (has_window) goto take_slow;
        }
        {
            PyObject *idx = PyLong_FromSsize_t(i);
            PyObject *tsv = PyFloat_FromDouble(ts);
            PyObject *val = PyFloat_FromDouble(v);
            if (idx == NULL || tsv == NULL || val == NULL) {
                Py_XDECREF(idx); Py_XDECREF(tsv); Py_XDECREF(val);
                goto fail;
            }
            int bad = PyList_Append(o_index, idx) | PyList_Append(o_names, name) |
                      PyList_Append(o_types, mtype) | PyList_Append(o_tags, tags) |
                      PyList_Append(o_ts, tsv) | PyList_Append(o_values, val);
            Py_DECREF(idx); Py_DECREF(tsv); Py_DECREF(val);
            if (bad) goto fail;
        }
        continue;
    take_slow:
        {
            PyObject *idx = PyLong_FromSsize_t(i);
            if (idx == NULL || PyList_Append(slow, idx) < 0) { Py_XDECREF(idx); goto fail; }
            Py_DECREF(idx);
        }
    }
    return slow;
fail:
    Py_DECREF(slow);
    return NULL;
}

static PyMethodDef methods[] = {
    {"fast_parse", fast_parse, METH_VARARGS, "Validate ordinary point dicts into batch columns; return the rest's positions."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    k_name = PyUnicode_InternFromString("name");
    k_type = PyUnicode_InternFromString("type");
    k_value = PyUnicode_InternFromString("value");
    k_tags = PyUnicode_InternFromString("tags");
    k_timestamp = PyUnicode_InternFromString("timestamp");
    k_window = PyUnicode_InternFromString("window");
    empty_tuple = PyTuple_New(0);
    if (!k_name || !k_type || !k_value || !k_tags || !k_timestamp || !k_window || !empty_tuple)
        return NULL;
    return PyModule_Create(&module);
}
