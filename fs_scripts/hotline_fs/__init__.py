"""Hotline's scripts inside FreeSWITCH (mod_python3): the logic behind the entry modules.

Standard library only: this runs in the switch's own Python, not Hotline's venv.
Modules: ``session`` (narrow interface + mod_python3 adapter), ``data`` (the
rendered hotline_data.json), ``prompts``, ``callcenter`` (mod_callcenter API),
``agent`` (desk-phone agent features), ``caller`` (survey, callback,
announcement), ``supervise`` (listen/whisper/barge).
"""
