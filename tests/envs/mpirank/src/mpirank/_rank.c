/* Calls MPI directly (not through mpi4py): proves the package was compiled and linked against the
   image's Open MPI. mpi4py initialises MPI before this is called. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <mpi.h>

static PyObject *world_rank(PyObject *self, PyObject *args) {
    int initialized = 0, rank = -1;
    MPI_Initialized(&initialized);
    if (!initialized) {
        PyErr_SetString(PyExc_RuntimeError, "MPI is not initialised: import mpi4py.MPI first");
        return NULL;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return PyLong_FromLong(rank);
}

static PyObject *library(PyObject *self, PyObject *args) {
    char text[MPI_MAX_LIBRARY_VERSION_STRING];
    int length = 0;
    MPI_Get_library_version(text, &length);
    return PyUnicode_FromStringAndSize(text, length);
}

static PyMethodDef methods[] = {
    {"world_rank", world_rank, METH_NOARGS, "MPI_Comm_rank(MPI_COMM_WORLD), from C"},
    {"library", library, METH_NOARGS, "MPI_Get_library_version, from C"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rank", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rank(void) { return PyModule_Create(&module); }
