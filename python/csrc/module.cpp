// The Python module ccattn._C. Importing it loads this library, whose static initializers register
// the torch operators (ops.cpp); the module itself is empty.
#include <Python.h>

PyMODINIT_FUNC PyInit__C() {
    static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "ccattn torch operators (torch.ops.ccattn)", -1,
                                 nullptr, nullptr, nullptr, nullptr, nullptr};
    return PyModule_Create(&module);
}
