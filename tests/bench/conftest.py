def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "gpu_check_dry: runs bench/gpu_check.sh in its DRY mode (CPU, tiny sizes, "
        "about 2 minutes on 2 cores); deselect with -m 'not gpu_check_dry'",
    )
