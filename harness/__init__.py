"""toxbench's harness, one sub-package per stage of the pipeline (dependencies point down this list):

- ``cli/``      one thin module per command (``run.py``, ``leaderboard.py`` ...), ``options.py`` the shared options
- ``report/``   run dirs -> boards: ``results`` (finished runs), ``cells``, ``leaderboard``, ``plots``, ``check``,
                ``display.yaml`` (every metric's name, unit, direction, format, headline rank)
- ``run/``      a spec -> a run dir: ``prepare`` (model + intervention), ``adapter`` (the lm-eval model),
                ``generation``, ``rolling``, ``evaluate`` (task evaluation shared by runner/merge/rescore), ``runner``
- ``measure/``  samples -> metrics with CIs: ``metrics``, ``toxicity``, ``fluency``, ``scorers/``, ``analysis/``
- ``spec/``     what a run is: ``runspec`` (RunSpec), ``sampling`` (named presets), ``values`` (KEY=VALUE), ``rundir``
- ``core/``     used by every stage: ``errors``, ``io``, ``registry``, ``paths``, ``hardware``, ``models``
Plug-ins live beside the harness: ``interventions/`` and ``tasks/`` (lm-eval YAMLs + hook modules).
"""
