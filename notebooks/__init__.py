"""The study notebooks, shipped with the workbench as ``workbench.notebooks`` (``workbench studies`` lists them).

A package only so that ``importlib.resources`` finds them the same way in a clone and in a wheel.
"""
