"""Mining commit data from a local git clone (`sweeper data from-git`), in the data format sweeper reads.

One module per job: `gitcli` runs git without user configuration, `commits` walks a clone with PyDriller,
`filters` says why a commit is left out, `change_metrics` computes the 14 Kamei change metrics the way
JIT-Defects4J did, `szz` finds bug-fixing commits and the commits they blame, `state` keeps finished work
for a re-run, `progress` reports long runs, `miner` puts them together and `command` is the command line.
"""
