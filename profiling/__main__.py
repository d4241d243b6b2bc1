"""python -m profiling codec=NAME [resolution=WxH] [checkpoint=PATH] [codec.KEY=VALUE ...]"""
from profiling.cli import profile_app

if __name__ == "__main__":
    profile_app()
