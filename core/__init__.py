"""mummi.core: the shared vocabulary every layer imports; it imports no other part of mummi."""
