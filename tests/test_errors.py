from workbench import errors


def test_every_error_is_a_workbench_error():
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.WorkbenchError)


def test_unknown_model_error_names_the_id_and_lists_what_is_available():
    error = errors.UnknownModelError("owner/missing", "offline", ["toyworld/sd-small", "arch/tiny"])
    assert "owner/missing" in str(error) and "offline" in str(error)
    assert "toyworld/sd-small" in str(error) and "arch/tiny" in str(error)
    assert error.available == ["toyworld/sd-small", "arch/tiny"]
