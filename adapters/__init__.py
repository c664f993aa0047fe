"""mummi.adapters"""
