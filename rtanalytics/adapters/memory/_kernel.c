/*
 * The memory store's write kernel: folds a batch of numeric points into the bucket rings of
 * every tier in one pass. The numpy code in rings.py does the same with a dozen array calls per
 * tier; this loop is what makes a 1,000-point batch cost microseconds rather than a millisecond.
 * tests/unit/test_memory_kernel.py requires both to leave identical arrays.
 *
 * fold(rows, ts, values, tiers) -> list[(tier_index, column)] of columns it reset
 *   rows: int64[n], ts: float64[n], values: float64[n]   (contiguous buffers)
 *   tiers: sequence of (res, oldest, starts, data, offsets, cells)
 *     res, oldest: int; starts: int64[columns]; data: float64[capacity, columns, width], the
 *     fields of a bucket side by side; offsets: the positions of (count, sum, min, max, last,
 *     last_ts) in a bucket, -1 for a field the kind does not keep; cells: int64[n] (out: the
 *     row * columns + column of each point, -1 when the tier does not take it) or None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int
get_buf(PyObject *obj, Buf *buf, Py_ssize_t itemsize, const char *what)
{
    buf->held = 0;
    if (obj == Py_None)
        return 0;
    if (PyObject_GetBuffer(obj, &buf->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    buf->held = 1;
    if (buf->view.itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected %zd-byte items", what, itemsize);
        return -1;
    }
    return 0;
}

static void
release(Buf *bufs, int n)
{
    for (int i = 0; i < n; i++)
        if (bufs[i].held)
            PyBuffer_Release(&bufs[i].view);
}

#define NFIELDS 6 /* count, sum, min, max, last, last_ts */


static PyObject *
fold(PyObject *self, PyObject *args)
{
    PyObject *o_rows, *o_ts, *o_values, *tiers;
    if (!PyArg_ParseTuple(args, "OOOO", &o_rows, &o_ts, &o_values, &tiers))
        return NULL;
    Buf in[3] = {{0}};
    PyObject *reset = NULL, *seq = NULL;
    if (get_buf(o_rows, &in[0], 8, "rows") < 0 || get_buf(o_ts, &in[1], 8, "ts") < 0 ||
        get_buf(o_values, &in[2], 8, "values") < 0)
        goto done_in;
    Py_ssize_t n = in[0].view.len / 8;
    if (in[1].view.len / 8 != n || in[2].view.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "rows, ts and values differ in length");
        goto done_in;
    }
    const int64_t *rows = in[0].view.buf;
    const double *ts = in[1].view.buf, *values = in[2].view.buf;
    seq = PySequence_Fast(tiers, "tiers must be a sequence");
    if (seq == NULL)
        goto done_in;
    reset = PyList_New(0);
    if (reset == NULL)
        goto done_in;
    Py_ssize_t ntiers = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t t = 0; t < ntiers; t++) {
        PyObject *tier = PySequence_Fast_GET_ITEM(seq, t);
        long long res, oldest;
        int off[NFIELDS];
        PyObject *o_starts, *o_data, *o_cells;
        if (!PyArg_ParseTuple(tier, "LLOO(iiiiii)O", &res, &oldest, &o_starts, &o_data, &off[0], &off[1],
                              &off[2], &off[3], &off[4], &off[5], &o_cells))
            goto fail;
        Buf b[3] = {{0}};
        if (get_buf(o_starts, &b[0], 8, "starts") < 0 || get_buf(o_cells, &b[1], 8, "cells") < 0 ||
            get_buf(o_data, &b[2], 8, "data") < 0) {
            release(b, 3);
            goto fail;
        }
        if (!b[0].held || !b[2].held || res <= 0 || off[0] < 0 || b[2].view.ndim != 3) {
            PyErr_SetString(PyExc_ValueError, "a tier needs res > 0, starts, 3-d data and a count");
            release(b, 3);
            goto fail;
        }
        int64_t *starts = b[0].view.buf;
        int64_t *cells = b[1].held ? b[1].view.buf : NULL;
        double *data = b[2].view.buf;
        Py_ssize_t capacity = b[2].view.shape[0], columns = b[2].view.shape[1], width = b[2].view.shape[2];
        if (b[0].view.len / 8 != columns) {
            PyErr_SetString(PyExc_ValueError, "starts and data disagree on the number of columns");
            release(b, 3);
            goto fail;
        }
        static const double empty[NFIELDS] = {0.0, 0.0, INFINITY, -INFINITY, -INFINITY, -INFINITY};
        for (Py_ssize_t i = 0; i < n; i++) {
            int64_t bucket = (int64_t)floor(ts[i] / (double)res) * res;
            if (cells)
                cells[i] = -1;
            if (bucket < oldest || rows[i] < 0 || rows[i] >= capacity)
                continue;
            int64_t col = (bucket / res) % columns;
            if (col < 0)
                col += columns;
            if (starts[col] != bucket) {
                if (starts[col] > bucket)
                    continue; /* the column already holds a newer bucket */
                for (Py_ssize_t r = 0; r < capacity; r++)
                    for (int f = 0; f < NFIELDS; f++)
                        if (off[f] >= 0)
                            data[(r * columns + col) * width + off[f]] = empty[f];
                starts[col] = bucket;
                PyObject *pair = Py_BuildValue("(nL)", t, (long long)col);
                if (pair == NULL || PyList_Append(reset, pair) < 0) {
                    Py_XDECREF(pair);
                    release(b, 3);
                    goto fail;
                }
                Py_DECREF(pair);
            }
            Py_ssize_t cell = rows[i] * columns + col;
            double *bucket_state = data + cell * width;
            double v = values[i];
            bucket_state[off[0]] += 1.0;
            if (off[1] >= 0) bucket_state[off[1]] += v;
            if (off[2] >= 0 && v < bucket_state[off[2]]) bucket_state[off[2]] = v;
            if (off[3] >= 0 && v > bucket_state[off[3]]) bucket_state[off[3]] = v;
            if (off[4] >= 0 && off[5] >= 0) {
                double held_ts = bucket_state[off[5]];
                if (ts[i] > held_ts || (ts[i] == held_ts && v > bucket_state[off[4]])) {
                    bucket_state[off[4]] = v;
                    bucket_state[off[5]] = ts[i];
                }
            }
            if (cells)
                cells[i] = cell;
        }
        release(b, 3);
    }
    Py_DECREF(seq);
    release(in, 3);
    return reset;
fail:
    Py_XDECREF(reset);
    reset = NULL;
done_in:
    Py_XDECREF(seq);
    release(in, 3);
    return reset;
}

static PyObject *
lookup(PyObject *self, PyObject *args)
{
    /* lookup(index, names, tags, out) fills out[i] = index.get((names[i], tags[i]), -1); returns
       whether any was missing. out: int64[n]. */
    PyObject *index, *names, *tags, *o_out;
    if (!PyArg_ParseTuple(args, "O!O!O!O", &PyDict_Type, &index, &PyList_Type, &names, &PyList_Type, &tags, &o_out))
        return NULL;
    Buf out = {0};
    if (get_buf(o_out, &out, 8, "out") < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(names);
    if (PyList_GET_SIZE(tags) != n || out.view.len / 8 != n) {
        release(&out, 1);
        PyErr_SetString(PyExc_ValueError, "names, tags and out differ in length");
        return NULL;
    }
    int64_t *codes = out.view.buf;
    int missing = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_Pack(2, PyList_GET_ITEM(names, i), PyList_GET_ITEM(tags, i));
        if (key == NULL) {
            release(&out, 1);
            return NULL;
        }
        PyObject *code = PyDict_GetItemWithError(index, key);
        Py_DECREF(key);
        if (code == NULL) {
            if (PyErr_Occurred()) {
                release(&out, 1);
                return NULL;
            }
            codes[i] = -1;
            missing = 1;
        } else {
            codes[i] = PyLong_AsLongLong(code);
        }
    }
    release(&out, 1);
    return PyBool_FromLong(missing);
}

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, "Fold numeric points into the bucket rings of every tier."},
    {"lookup", lookup, METH_VARARGS, "Series codes of (name, tags) pairs; -1 where unknown."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods};

PyMODINIT_FUNC
PyInit__kernel(void)
{
    return PyModule_Create(&module);
}
