/* test_frontend.c: standalone check of the frontend (not part of the
 * build).  Embeds Python, imports a module and, for each named function,
 * builds kiln IR, prints it and runs the verifier; expected compile errors
 * print their diagnostic.
 *
 *   test_frontend <dir> <module> <func> [<func> ...]
 */
#include "decode.h"

#include <stdio.h>
#include <stdlib.h>

#include "../compile.h"

int
main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s dir module func...\n", argv[0]);
        return 2;
    }
    Py_Initialize();
    if (kl_types_init() < 0) {
        return 1;
    }
    PyObject *path = PySys_GetObject("path");
    PyObject *dir = PyUnicode_FromString(argv[1]);
    PyList_Insert(path, 0, dir);
    Py_DECREF(dir);
    PyObject *mod = PyImport_ImportModule(argv[2]);
    if (mod == NULL) {
        PyErr_Print();
        return 1;
    }
    int failures = 0;
    for (int i = 3; i < argc; i++) {
        PyObject *fn = PyObject_GetAttrString(mod, argv[i]);
        if (fn == NULL) {
            PyErr_Print();
            failures++;
            continue;
        }
        KlOptions opt = {0, 1};
        KlModule *m = kl_module_new(opt);
        KlDiag d = {0};
        KlFunc *f = kl_build_ir(m, fn, &d);
        if (PyErr_Occurred()) {
            printf("!! Python error left set by %s\n", argv[i]);
            PyErr_Print();
            failures++;
        }
        if (f == NULL) {
            printf("== %s: error (kind %d) line %d: %s\n\n", argv[i],
                   (int)d.kind, d.line, d.msg);
            if (d.kind != KL_DIAG_COMPILE) {
                failures++;
            }
        } else {
            char *text = kl_func_print(f);
            printf("== %s\n%s", argv[i], text ? text : "(no text)\n");
            free(text);
            for (int32_t r = 0; r < m->nraises; r++) {
                printf("  site%d: kind %d line %d msg \"%s\"\n", r,
                       (int)m->raises[r].kind, m->raises[r].line,
                       m->raises[r].msg);
            }
            if (kl_verify(f, 0, &d) < 0) {
                printf("!! VERIFY FAILED: %s\n", d.msg);
                failures++;
            }
            printf("\n");
        }
        kl_module_free(m);
        Py_DECREF(fn);
    }
    Py_DECREF(mod);
    Py_Finalize();
    return failures != 0;
}
