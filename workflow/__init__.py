"""mummi.workflow"""
