// Stand-in for Detectron2's compiled `_C` extension: the PyPI detectron2 sdists ship no C++
// sources, and the Python package imports `_C` at start-up. The ops we use come from
// torchvision instead. Only the environment-report functions exist here, answering that the
// extension is a stub (detectron2's `collect_env_info` calls them); `has_cuda` is false.
#include <Python.h>

static PyObject* stub_version(PyObject*, PyObject*) {
  return PyUnicode_FromString("none (stub _C without compiled ops)");
}

static PyObject* stub_has_cuda(PyObject*, PyObject*) { Py_RETURN_FALSE; }

static PyMethodDef stub_methods[] = {
    {"get_compiler_version", stub_version, METH_NOARGS, "The stub has no compiled ops."},
    {"get_cuda_version", stub_version, METH_NOARGS, "The stub has no compiled ops."},
    {"has_cuda", stub_has_cuda, METH_NOARGS, "False: the stub has no CUDA ops."},
    {nullptr, nullptr, 0, nullptr}};

static struct PyModuleDef d2_stub_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, stub_methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&d2_stub_module); }
