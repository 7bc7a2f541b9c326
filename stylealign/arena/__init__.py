"""The arena: compare a persona adapter with the baseline side by side, run blind battles, rate them.

- `votes`       SQLite vote store (WAL, safe for concurrent voters)
- `ratings`     Bradley–Terry fit (logistic regression, Elo scale), bootstrap CIs, style control
- `leaderboard` ratings + records + pairwise win-rate matrix
- `export`      decisive votes -> DPO preference JSONL
- `battles`     blind-battle state per session (server-side vote checks)
- `service`     ArenaService: the handlers the Gradio app (ui/app.py, installed as stylealign.ui) calls
"""
