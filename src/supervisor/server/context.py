# execbox's context driver: one persistent Python interpreter of a stateful context.
#
# Started by the supervisor as
#   python3 -u -c "exec(compile(__import__('sys').argv.pop(1),'<execbox-context>','exec'))" <this>
# Commands arrive as JSON lines on fd 3, answers leave as JSON lines on fd 4; the user code's
# stdout and stderr are the process's own fds 1 and 2 (forwarded by the supervisor).
#   -> {"code": "...", "cpu_ms": N}   (cpu_ms optional: the call's CPU time limit)
#   <- {"ready": true, "version": "3.11.2", "usage": {...}}      once, at start
#   <- {"done": true, "results": [bundle...], "error": null | {"name", "value", "traceback"},
#       "usage": {"cpu_ms", "max_rss_bytes"}, "cpu_limit": bool}
# A bundle maps MIME types to data, as Jupyter's display data does. SIGINT while code runs
# raises KeyboardInterrupt in it (reported as the error); the namespace keeps its state. So does
# the call's CPU limit: an ITIMER_PROF of cpu_ms (the interpreter's own CPU, all its threads)
# whose SIGPROF raises KeyboardInterrupt and answers "cpu_limit": true.
# Everything lives inside one function so that the user's namespace (the real __main__, so
# pickle finds user classes) starts as clean as a fresh interpreter's.


def _execbox_context():
    import ast
    import base64
    import builtins
    import importlib.machinery
    import io
    import json
    import linecache
    import os
    import resource
    import signal
    import sys
    import traceback
    import types

    main = sys.modules["__main__"]
    ns = main.__dict__
    del ns["_execbox_context"]
    sys.argv = [""]
    driver_file = "<execbox-context>"
    # Bundles over this many bytes (base64 and text together) are replaced by a note.
    max_results_bytes = 8 << 20

    commands = os.fdopen(3, "rb", buffering=0)
    answers = os.fdopen(4, "wb", buffering=0)
    # Programs the code starts must not hold the driver's pipes open.
    os.set_inheritable(3, False)
    os.set_inheritable(4, False)

    state = types.SimpleNamespace(
        running=False, results=None, size=0, count=0, cpu_over=False
    )

    def on_interrupt(signum, frame):
        # Between commands an interrupt has nothing to stop.
        if state.running:
            raise KeyboardInterrupt

    def on_cpu_limit(signum, frame):
        if state.running:
            state.cpu_over = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    signal.signal(signal.SIGPROF, on_cpu_limit)

    def clean(s):
        # Lone surrogates are not valid in JSON's consumers.
        return str(s).encode("utf-8", "replace").decode("utf-8")

    def send(obj):
        answers.write(json.dumps(obj).encode() + b"\n")

    # --- display -------------------------------------------------------------------------
    reprs = [
        ("_repr_png_", "image/png"),
        ("_repr_jpeg_", "image/jpeg"),
        ("_repr_svg_", "image/svg+xml"),
        ("_repr_html_", "text/html"),
        ("_repr_markdown_", "text/markdown"),
        ("_repr_latex_", "text/latex"),
        ("_repr_json_", "application/json"),
    ]

    def is_figure(value):
        fig = sys.modules.get("matplotlib.figure")
        return fig is not None and isinstance(value, fig.Figure)

    def figure_bundle(fig):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return {
            "image/png": base64.b64encode(buf.getvalue()).decode(),
            "text/plain": clean(repr(fig)),
        }

    def bundle(value):
        if is_figure(value):
            return figure_bundle(value)
        out = {}
        mimebundle = getattr(value, "_repr_mimebundle_", None)
        if callable(mimebundle):
            try:
                got = mimebundle()
                if isinstance(got, tuple):
                    got = got[0]
                if isinstance(got, dict):
                    out.update(got)
            except Exception:
                pass
        for method, mime in reprs:
            if mime in out:
                continue
            fn = getattr(value, method, None)
            if not callable(fn) or isinstance(value, type):
                continue
            try:
                data = fn()
            except Exception:
                continue
            if isinstance(data, tuple):
                data = data[0]
            if data is None:
                continue
            if isinstance(data, (bytes, bytearray)):
                data = base64.b64encode(data).decode()
            elif mime != "application/json":
                data = clean(data)
            out[mime] = data
        for mime, data in list(out.items()):
            if isinstance(data, (bytes, bytearray)):
                out[mime] = base64.b64encode(data).decode()
        out["text/plain"] = clean(repr(value))
        return out

    def add_result(b):
        results = state.results
        if results is None:
            return
        size = sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in b.values())
        state.size += size
        if state.size > max_results_bytes:
            b = {
                "text/plain": "<display of %d bytes left out: a call's results are limited to %d bytes>"
                % (size, max_results_bytes)
            }
        results.append(b)

    def display(*objs):
        """Show each object as a display result of this call (as Jupyter's display)."""
        for obj in objs:
            add_result(bundle(obj))

    builtins.display = display

    def flush_figures():
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in plt.get_fignums():
            fig = plt.figure(num)
            try:
                add_result(figure_bundle(fig))
            except Exception as e:
                add_result({"text/plain": clean("<figure not rendered: %r>" % (e,))})
        plt.close("all")

    # --- matplotlib: figures are display results, plt.show() shows what is open ----------
    # Subprocesses get a headless backend; this interpreter gets Agg with a show() of its own.
    user_backend = "MPLBACKEND" in os.environ
    os.environ.setdefault("MPLBACKEND", "Agg")
    # Its font cache and config go to /tmp, not into the work dir as ~/.config and ~/.cache.
    os.environ.setdefault("MPLCONFIGDIR", "/tmp/.matplotlib")
    inline = "_execbox_inline"

    class InlineLoader:
        def create_module(self, spec):
            return None

        def exec_module(self, module):
            exec("from matplotlib.backends.backend_agg import *", module.__dict__)

            def show(*args, **kwargs):
                flush_figures()

            module.show = show

    class Hooks:
        def find_spec(self, name, path=None, target=None):
            if name == inline:
                return importlib.machinery.ModuleSpec(name, InlineLoader())
            if name != "matplotlib" or user_backend:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None:
                return None
            real = spec.loader.exec_module

            def exec_module(module):
                real(module)
                module.rcParams["backend"] = "module://" + inline

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Hooks())

    # --- errors --------------------------------------------------------------------------
    def strip(te, seen):
        # The driver's own frames (the exec call, the interrupt handler) are not the user's.
        if te is None or id(te) in seen:
            return
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list(
            [f for f in te.stack if f.filename != driver_file]
        )
        strip(te.__cause__, seen)
        strip(te.__context__, seen)

    def error_of(e):
        te = traceback.TracebackException(type(e), e, e.__traceback__)
        strip(te, set())
        return {
            "name": clean(type(e).__name__),
            "value": clean(e),
            "traceback": clean("".join(te.format())),
        }

    # --- running -------------------------------------------------------------------------
    def run(code, cpu_ms):
        state.count += 1
        filename = "<cell-%d>" % state.count
        lines = code.splitlines(True)
        linecache.cache[filename] = (len(code), None, lines, filename)
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            body = compile(tree, filename, "exec")
            last = compile(last, filename, "eval") if last is not None else None
        except SyntaxError as e:
            # The compiler's frames are not the user's either.
            raise e.with_traceback(None)
        state.running = True
        if cpu_ms:
            # Again every 100 ms of CPU after, for code that catches the first interrupt.
            signal.setitimer(signal.ITIMER_PROF, cpu_ms / 1000, 0.1)
        try:
            exec(body, ns)
            value = eval(last, ns) if last is not None else None
        finally:
            # Disarmed first: at most one SIGPROF already on its way may still interrupt here,
            # which the command loop catches like the first.
            signal.setitimer(signal.ITIMER_PROF, 0)
            state.running = False
        if value is not None:
            add_result(bundle(value))
            if is_figure(value):
                sys.modules["matplotlib.pyplot"].close(value)

    def usage():
        # The interpreter's own CPU and the programs it waited for; the supervisor takes the
        # difference around each call.
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return {"cpu_ms": int(cpu * 1000), "max_rss_bytes": me.ru_maxrss * 1024}

    version = "%d.%d.%d" % sys.version_info[:3]
    send({"ready": True, "version": version, "usage": usage()})
    while True:
        line = commands.readline()
        if not line:
            return
        try:
            command = json.loads(line)
            code, cpu_ms = command["code"], command.get("cpu_ms")
        except Exception as e:
            send({"done": True, "results": [], "error": error_of(e), "usage": usage()})
            continue
        state.results, state.size, state.cpu_over = [], 0, False
        error = None
        try:
            run(code, cpu_ms)
        except BaseException as e:
            # KeyboardInterrupt and SystemExit too: the interpreter stays.
            error = error_of(e)
        state.running = False
        try:
            flush_figures()
        except BaseException as e:
            error = error or error_of(e)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        results, state.results = state.results, None
        send(
            {
                "done": True,
                "results": results,
                "error": error,
                "usage": usage(),
                "cpu_limit": state.cpu_over,
            }
        )


_execbox_context()
