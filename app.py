"""Streamlit entry: `streamlit run app.py`."""
import streamlit as st

st.set_page_config(page_title="CSL data cleaner", layout="wide")
st.title("CSL data cleaner")
st.write("The dashboard is on its way; train from the command line meanwhile: `python -m csl_core train --data demo`.")
