"""Helpers of scripts/record_pcaps.py: servers, clients, link simulators, capture plumbing.

Nothing here is part of the dronewatch package; these modules only produce the captures under
pcaps/lab/ and pcaps/scenarios/. All traffic goes to loopback or to network namespaces the
recorder creates itself.
"""
