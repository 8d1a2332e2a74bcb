"""Data shipped with the workbench (route tables, styles, prompt sets, wildcards): ``workbench.data`` when installed.

A package only so that ``importlib.resources`` finds it the same way in a clone and in a wheel.
"""
