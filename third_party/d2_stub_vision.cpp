// Empty `detectron2._C` extension: the PyPI detectron2 sdists ship no C++ sources, and the
// Python package imports `_C` at start-up. Everything we use runs on torchvision ops instead.
#include <Python.h>

static struct PyModuleDef d2_stub_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&d2_stub_module); }
