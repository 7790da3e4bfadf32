# Jupyter Server configuration of the notebook image (loaded from /etc/jupyter).
#
# Outside Kubeflow: JupyterLab on 0.0.0.0:8888 with token authentication (JUPYTER_TOKEN, or
# a random token Jupyter prints), serving /home/jovyan.
#
# Under Kubeflow's notebook controller, which sets NB_PREFIX (e.g. /notebook/<ns>/<name>)
# and authenticates every request in front of the pod (Istio), the image follows
# Kubeflow's own notebook images: serve under NB_PREFIX, no token, and let the Kubeflow
# dashboard (another origin) embed it in an iframe.
import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821 (provided by Jupyter)
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.root_dir = os.path.expanduser("~")

prefix = os.environ.get("NB_PREFIX", "").strip()
if prefix:
    c.ServerApp.base_url = prefix
    c.IdentityProvider.token = ""
    c.ServerApp.allow_origin = "*"
    c.ServerApp.tornado_settings = {
        "headers": {"Content-Security-Policy": "frame-ancestors 'self' *"}
    }
