"""Streamlit entry: `streamlit run app.py` (or `csl-clean app`). A router only: page config, the shared sidebar,
the pages. Streamlit puts this file's folder on sys.path, so `pages._common` imports from here; `csl_core` is
installed (`pip install -e .`)."""
import streamlit as st

from pages._icon import app_icon

st.set_page_config(page_title="CSL data cleaner", page_icon=app_icon(), layout="wide")

# The first page after a (re)start imports the library and what every page draws with: seconds on a busy
# machine, said rather than a blank page. Later reruns find them imported (a spinner shows only after 0.5 s).
with st.spinner("Starting the dashboard: loading its libraries..."):
    import plotly.graph_objects  # noqa: F401  (the pages' charts)

    import pages._components  # noqa: F401  (the focused review and the thumbnail grid)
    from pages._filters import sample_filters  # noqa: F401
    from pages._sidebar import show_failure, sidebar

# One entry per page, in menu order; a new page is one more line here. Each url_path differs from its
# file name on purpose: Streamlit still knows the old automatic `pages/` folder, and a URL equal to a
# file name would open that file alone, without this router and its sidebar.
PAGES = [
    st.Page("pages/run.py", title="Run", icon=":material/play_circle:", url_path="training", default=True),
    st.Page("pages/trajectories.py", title="Trajectories", icon=":material/show_chart:", url_path="loss-trajectories"),
    st.Page("pages/galleries.py", title="Galleries", icon=":material/photo_library:", url_path="gallery"),
    st.Page("pages/review.py", title="Review queue", icon=":material/checklist:", url_path="review-queue"),
    st.Page("pages/focus.py", title="Focused review", icon=":material/keyboard:", url_path="focused-review"),
    st.Page("pages/pairs.py", title="Class pairs", icon=":material/grid_on:", url_path="class-pairs"),
    st.Page("pages/duplicates.py", title="Duplicates", icon=":material/content_copy:", url_path="duplicate-groups"),
    st.Page("pages/export.py", title="Export", icon=":material/download:", url_path="cleaned-labels"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/query_stats:", url_path="evaluation"),
    st.Page("pages/memorization.py", title="Memorisation", icon=":material/psychology:", url_path="memorisation"),
    st.Page("pages/help.py", title="Help", icon=":material/help:", url_path="documentation"),
]

page = st.navigation(PAGES)
# A crafted or damaged run is said on the page as damaged, with what is wrong: never a traceback.
try:
    sidebar()
    page.run()
except Exception as error:  # noqa: BLE001  (st.stop and st.rerun are not Exceptions: they pass through)
    show_failure(error)
