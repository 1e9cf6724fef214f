# The reference for test/utility/humaneval.test.ts: a transcription of openai/human-eval human_eval/execution.py
# (check_correctness, unsafe_execute, reliability_guard, swallow_io, time_limit, create_tempdir), timeout 3.0 as
# evaluate_functional_correctness's default. Reads [{"problem": {...}, "completion": "..."}] as JSON on stdin and
# prints [{"passed": bool, "result": str}] in the same order. Runs the cases it is given outside any sandbox, as
# human-eval does: give it only the test's own programs.
import contextlib, faulthandler, io, json, multiprocessing, os, signal, sys, tempfile
from concurrent.futures import ThreadPoolExecutor


def unsafe_execute(problem, completion, timeout, result):
    with create_tempdir():
        import os, shutil
        rmtree = shutil.rmtree; rmdir = os.rmdir; chdir = os.chdir
        reliability_guard()
        check_program = problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"
        try:
            exec_globals = {}
            with swallow_io():
                with time_limit(timeout):
                    exec(check_program, exec_globals)
            result.append("passed")
        except TimeoutException:
            result.append("timed out")
        except BaseException as e:
            result.append(f"failed: {e}")
        shutil.rmtree = rmtree; os.rmdir = rmdir; os.chdir = chdir


def check_correctness(problem, completion, timeout):
    manager = multiprocessing.Manager(); result = manager.list()
    p = multiprocessing.Process(target=unsafe_execute, args=(problem, completion, timeout, result))
    p.start(); p.join(timeout=timeout + 1)
    if p.is_alive(): p.kill(); p.join()
    if not result: result.append("timed out")
    return dict(passed=result[0] == "passed", result=result[0])


@contextlib.contextmanager
def time_limit(seconds):
    def signal_handler(signum, frame): raise TimeoutException("Timed out!")
    signal.setitimer(signal.ITIMER_REAL, seconds); signal.signal(signal.SIGALRM, signal_handler)
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0)


@contextlib.contextmanager
def swallow_io():
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream):
        with contextlib.redirect_stderr(stream):
            with redirect_stdin(stream):
                yield


@contextlib.contextmanager
def create_tempdir():
    with tempfile.TemporaryDirectory() as dirname:
        cwd = os.getcwd(); os.chdir(dirname)
        try: yield dirname
        finally: os.chdir(cwd)


class TimeoutException(Exception): pass


class WriteOnlyStringIO(io.StringIO):
    def read(self, *a, **k): raise IOError
    def readline(self, *a, **k): raise IOError
    def readlines(self, *a, **k): raise IOError
    def readable(self, *a, **k): return False


class redirect_stdin(contextlib._RedirectStream): _stream = "stdin"


def reliability_guard(maximum_memory_bytes=None):
    faulthandler.disable()
    import builtins
    builtins.exit = None; builtins.quit = None
    import os
    os.environ["OMP_NUM_THREADS"] = "1"
    for n in ["kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
              "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
              "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"]:
        setattr(os, n, None)
    import shutil
    shutil.rmtree = None; shutil.move = None; shutil.chown = None
    import subprocess
    subprocess.Popen = None
    import builtins as b; b.help = None
    import sys
    for m in ["ipdb", "joblib", "resource", "psutil", "tkinter"]: sys.modules[m] = None


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    # one process per case as human-eval's evaluate_functional_correctness runs them (it uses a thread pool too)
    with ThreadPoolExecutor(max_workers=4) as pool:
        out = list(pool.map(lambda c: check_correctness(c["problem"], c["completion"], 3.0), cases))
    print(json.dumps(out))
