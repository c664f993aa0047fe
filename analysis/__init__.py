"""mummi.analysis"""
