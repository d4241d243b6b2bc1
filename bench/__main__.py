"""python -m bench [classical=[NAME,...]] [learned=[CKPT_OR_GLOB,...]] [data.eval_dir=DIR] [out_dir=DIR]"""
from bench.cli import bench_app

if __name__ == "__main__":
    bench_app()
