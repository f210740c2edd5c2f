// Operator registrations of the medtrain extension (torch.ops.medtrain.*).
//
// Loaded either as the prebuilt Python module `medtrain._C` (setup.py, MEDTRAIN_BUILD_EXT=1) or
// as a plain shared library JIT-built by medtrain/kernels/native.py; loading registers the ops.
#include <Python.h>
#include <torch/library.h>

#include "contrastive/contrastive.h"

// FRAGMENT: other medtrain ops (e.g. Python torch.library.custom_op) share the namespace.
TORCH_LIBRARY_FRAGMENT(medtrain, m) {
  m.def("contrastive_lse_rows(Tensor q, Tensor k, Tensor scale, int block_n=0) -> Tensor");
  m.def(
      "contrastive_grad_rows(Tensor q, Tensor k, Tensor scale, Tensor lse_q, Tensor lse_k, "
      "int offset, int block_n=0) -> (Tensor, Tensor)");
  m.def("contrastive_built_with_cuda() -> bool", &medtrain::contrastive::built_with_cuda);
}

TORCH_LIBRARY_IMPL(medtrain, CPU, m) {
  m.impl("contrastive_lse_rows", &medtrain::contrastive::lse_rows);
  m.impl("contrastive_grad_rows", &medtrain::contrastive::grad_rows);
}

#ifdef MEDTRAIN_WITH_CUDA
TORCH_LIBRARY_IMPL(medtrain, CUDA, m) {
  m.impl("contrastive_lse_rows", &medtrain::contrastive::lse_rows);
  m.impl("contrastive_grad_rows", &medtrain::contrastive::grad_rows);
}
#endif

// Makes the library importable as the Python module medtrain._C (setup.py build).
static PyModuleDef medtrain_C_module = {PyModuleDef_HEAD_INIT, "_C",
                                        "medtrain native ops (torch.ops.medtrain)", -1};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&medtrain_C_module); }
