"""Shared test builders (imported by the tests as ``support``; never a test module itself).

* :mod:`support.paths` — the repository, the shipped sample data and the real-data tier;
* :mod:`support.volumes` — boxes and spheres with known volumes and distances, NIfTI writers,
  a tiny Decathlon-layout dataset of noisy balls;
* :mod:`support.dicom` — synthetic DICOM series with known geometry and values;
* :mod:`support.child` — ONNX Runtime and OpenVINO run in child processes (never imported
  into the test process).

Tests import from here; no test imports another test module.
"""
