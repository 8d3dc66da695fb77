from ckptbench.cli import app

app(prog_name="ckptbench")
