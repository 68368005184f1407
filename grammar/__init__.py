"""The .ntk language grammar (ntk.lark), installed as package data of ``ntkdsl.grammar``."""
