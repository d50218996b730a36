"""Survival: Kaplan-Meier curves by predicted risk group with the log-rank p-value, the selected patient's predicted
survival curve, and the model's C-index."""

import streamlit as st

from medvl.apps import survivalview, ui
from medvl.apps.catalog import pseudonym
from medvl.errors import MedvlError

ui.page("Survival", "📈")
ws, cat = ui.workspace_or_stop()
tables = survivalview.find_tables(cat.tables)
if not tables:
    st.info("This workspace has no survival table: put a CSV/Parquet with a time column (e.g. `survival_months`) "
            "and an event column (e.g. `event` or `censorship`) plus covariates into `tables/`.")
    st.stop()
names = {pseudonym(p, "table"): p for p, _ in tables}
table = names[st.selectbox("Survival table", list(names), key="sv_table")]
try:
    view = ui.survival_view(str(table), tuple(str(p) for p in cat.survival_models))
except MedvlError as exc:
    ui.error(exc)
    st.stop()

unit = "months" if "month" in view.spec.time.lower() else ""
m1, m2, m3 = st.columns(3)
m1.metric("C-index", f"{view.c_index:.3f}", help=view.c_index_kind)
p = view.km["logrank_p"]
m2.metric("log-rank p (low vs high risk)", f"{p:.2g}")
m3.metric("patients / events", f"{len(view.refs)} / {int(view.event.sum())}")
st.caption(f"{view.origin}; covariates: {', '.join(view.spec.covariates)}; C-index: {view.c_index_kind}; "
           "risk groups split at the training median risk.")

patient = st.selectbox("Patient", list(range(len(view.refs))), format_func=lambda i: view.refs[i], key="sv_patient")
st.markdown(f"**{view.refs[patient]}** · predicted risk {view.risk[patient]:+.3f} · **{view.group_of(patient)}** · "
            f"observed {view.time[patient]:.1f} {unit} ({'event' if view.event[patient] else 'censored'})")
st.pyplot(survivalview.plot_view(view, patient, unit))
st.dataframe(ui.as_rows([{"group": g["name"], "patients": g["n"], "events": g["events"],
                          "median survival": g["median_survival"]} for g in view.km["groups"]]),
             hide_index=True)
