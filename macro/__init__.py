"""mummi.macro"""
