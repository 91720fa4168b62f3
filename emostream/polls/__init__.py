"""Polls, votes and trivia on the reaction pipeline: only who may respond and how responses
are tallied differ from emoji swarms (../shared/DESIGN.md, "Polls, votes and trivia").

    model.py      a poll's definition, states and public object        (pure)
    ballots.py    the per-user vote rules, trivia points, audit digest (pure; recount's twin
                  of lua/apply_votes.lua)
    store.py      reading and changing polls in Redis
    gate.py       ingest: which votes to accept, buffered for the flusher
    steward.py    workers: freeze at lock, the live tally each window
    http_ingest.py, http_deliver.py, fanout.py   the API and the SSE `poll` frames
    recount.py    `emostream recount`
"""
