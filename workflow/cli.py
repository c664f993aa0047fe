def run_main(argv=None):
    return 0
def status_main(argv=None):
    return 0
