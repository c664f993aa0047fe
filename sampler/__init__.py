"""mummi.sampler"""
