print("coalesced: not yet implemented")
