"""Knowledge distillation from a teacher checkpoint into students, on the shared training engine.

``python -m distill`` (distill.run), the objective (distill.objective), the KD terms
(distill.losses), the teacher-output cache (``python -m distill.cache``) and the sweep summary
(``python -m distill.summary``).
"""
