"""Classifier backends behind one port."""
