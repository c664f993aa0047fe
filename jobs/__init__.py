"""mummi.jobs"""
